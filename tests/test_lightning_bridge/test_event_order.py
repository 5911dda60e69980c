"""The seed-000 event flow inside a real ``lightning.Trainer``: order, validation variants, errors, async."""

from __future__ import annotations

import asyncio
import threading

import pytest
from bridge_helpers import QUIET, Seed000Recorder, TinyRegression, epoch_events, loader
from lightning.pytorch import Trainer

from callbacks import Callback, ModelCheckpoint
from lightning_bridge import LightningCallbackAdapter


def test_adapter_dispatches_the_seed000_flow_over_two_epochs(tmp_path):
    # Prepare: the score improves each epoch, so each epoch writes epoch=N, best and last
    recorder = Seed000Recorder()
    checkpoint = ModelCheckpoint(save_dir=str(tmp_path), save_every=1, metric="score", mode="max")
    adapter = LightningCallbackAdapter([recorder, checkpoint], on_error="raise")
    trainer = Trainer(max_epochs=2, callbacks=[adapter], **QUIET)  # sanity check on (2 steps)

    # Execute
    trainer.fit(TinyRegression(scores=[1.0, 2.0]), loader(), loader())

    # Assert: exactly the seed-000 order; the sanity check's validation is not dispatched
    assert recorder.events == [
        ("on_train_start",),
        *epoch_events(0, batches=2, saves=3),
        *epoch_events(1, batches=2, saves=3),
        ("on_train_end",),
    ]
    assert [log["score"] for log in recorder.validation_logs] == [1.0, 2.0]


def test_adapter_validation_every_second_epoch_reports_fresh_validation_metrics_only(tmp_path):
    # Prepare
    recorder = Seed000Recorder()
    checkpoint = ModelCheckpoint(save_dir=str(tmp_path), save_every=1, metric="score", mode="max")
    adapter = LightningCallbackAdapter([recorder, checkpoint], on_error="raise")
    trainer = Trainer(max_epochs=3, check_val_every_n_epoch=2, callbacks=[adapter], **QUIET)

    # Execute
    trainer.fit(TinyRegression(scores=[1.0, 2.0, 3.0]), loader(), loader())

    # Assert: epochs 0 and 2 have no validation; their checkpoints (periodic and last, no best: the
    # score is unknown there) are written in on_epoch_end and reported right after it
    assert recorder.events == [
        ("on_train_start",),
        *epoch_events(0, batches=2, validation=False),
        *[("on_save_checkpoint", 0)] * 2,
        *epoch_events(1, batches=2, saves=3),
        *epoch_events(2, batches=2, validation=False),
        *[("on_save_checkpoint", 2)] * 2,
        ("on_train_end",),
    ]
    # Lightning keeps epoch 1's val_loss in callback_metrics; epoch logs carry it only in epoch 1
    assert ["val_loss" in logs for logs in recorder.epoch_logs] == [False, True, False]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.ckpt", "epoch=0000.ckpt", "epoch=0001.ckpt", "epoch=0002.ckpt", "last.ckpt",
    ]  # fmt: skip


@pytest.mark.parametrize("no_validation", ["limit_val_batches=0", "no val loader"])
def test_adapter_runs_without_validation(no_validation):
    # Prepare
    recorder = Seed000Recorder()
    extra = {"limit_val_batches": 0} if no_validation == "limit_val_batches=0" else {}
    trainer = Trainer(max_epochs=2, callbacks=[LightningCallbackAdapter([recorder])], **QUIET, **extra)
    val = loader() if no_validation == "limit_val_batches=0" else None

    # Execute
    trainer.fit(TinyRegression(), loader(), val)

    # Assert
    assert recorder.events == [
        ("on_train_start",),
        *epoch_events(0, batches=2, validation=False),
        *epoch_events(1, batches=2, validation=False),
        ("on_train_end",),
    ]
    assert [sorted(logs) for logs in recorder.epoch_logs] == [["avg_loss", "lr"]] * 2


def test_adapter_on_exception_then_on_train_end_once_last_and_the_error_propagates():
    # Prepare
    recorder = Seed000Recorder()
    trainer = Trainer(max_epochs=3, callbacks=[LightningCallbackAdapter([recorder])], **QUIET)

    # Execute
    with pytest.raises(RuntimeError, match="boom in epoch 1"):
        trainer.fit(TinyRegression(fail_at_epoch=1), loader(), loader())

    # Assert: Lightning itself skips on_train_end after an exception; the adapter fires it
    assert recorder.events == [
        ("on_train_start",),
        *epoch_events(0, batches=2),
        ("on_epoch_start", 1),
        ("on_batch_start", 1, 0),
        ("on_exception", "RuntimeError"),
        ("on_train_end",),
    ]
    assert str(recorder.exceptions[0]) == "boom in epoch 1"


class FailingEnd(Callback):
    """Raises in ``on_exception`` and ``on_train_end``."""

    def on_exception(self, exception):
        raise RuntimeError("failing on_exception")

    def on_train_end(self):
        raise RuntimeError("failing on_train_end")


def test_adapter_raise_gives_every_callback_on_train_end_then_raises_the_first_error():
    # Prepare
    first, last = Seed000Recorder(), Seed000Recorder()
    adapter = LightningCallbackAdapter([first, FailingEnd(), last], on_error="raise")
    trainer = Trainer(max_epochs=1, callbacks=[adapter], **QUIET)

    # Execute
    with pytest.raises(RuntimeError, match=r"^failing on_train_end$"):
        trainer.fit(TinyRegression(), loader(), loader())

    # Assert: the callback after the failing one still ended, once
    assert [e for e in last.events if e[0] in ("on_exception", "on_train_end")] == [("on_train_end",)]
    assert first.events[-1] == last.events[-1] == ("on_train_end",)


def test_adapter_raise_in_on_exception_still_gives_every_callback_both_end_hooks():
    # Prepare
    last = Seed000Recorder()
    adapter = LightningCallbackAdapter([FailingEnd(), last], on_error="raise")
    trainer = Trainer(max_epochs=2, callbacks=[adapter], **QUIET)

    # Execute
    with pytest.raises(RuntimeError, match=r"^failing on_train_end$") as caught:
        trainer.fit(TinyRegression(fail_at_epoch=0), loader(), loader())

    # Assert: the end hooks' errors come chained, the on_exception one first, after the training error
    assert last.events[-2:] == [("on_exception", "RuntimeError"), ("on_train_end",)]
    on_exception_error = caught.value.__context__
    assert str(on_exception_error) == "failing on_exception"
    assert str(on_exception_error.__context__) == "boom in epoch 0"


class AsyncSeed003(Callback):
    """A seed-003 callback: ``async def`` hooks with the seed's signatures, awaiting inside."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.threads: set[str] = set()

    async def on_train_start(self, trainer, **kwargs):
        await asyncio.sleep(0)
        self.events.append(("on_train_start", trainer))

    async def on_epoch_start(self, learner, epoch, **kwargs):
        await asyncio.sleep(0)
        self.events.append(("on_epoch_start", learner, epoch))

    async def on_epoch_end(self, learner, epoch, metrics, **kwargs):
        await asyncio.sleep(0)
        self.threads.add(threading.current_thread().name)
        self.events.append(("on_epoch_end", learner, epoch, sorted(metrics)))

    async def on_train_end(self, trainer, result, **kwargs):
        await asyncio.sleep(0)
        self.events.append(("on_train_end", trainer, sorted(result)))


def test_adapter_awaits_async_seed003_hooks_inside_a_running_event_loop():
    # Prepare
    callback = AsyncSeed003()
    trainer = Trainer(max_epochs=2, callbacks=[LightningCallbackAdapter([callback], on_error="raise")], **QUIET)
    model = TinyRegression()

    async def main():
        asyncio.get_running_loop()  # a loop runs in this thread while fit runs synchronously
        trainer.fit(model, loader(), loader())

    # Execute
    asyncio.run(main())

    # Assert: every hook ran, in order; learner is the LightningModule, trainer the Trainer
    logs = ["avg_loss", "lr", "val_loss"]
    assert callback.events == [
        ("on_train_start", trainer),
        ("on_epoch_start", model, 0),
        ("on_epoch_end", model, 0, logs),
        ("on_epoch_start", model, 1),
        ("on_epoch_end", model, 1, logs),
        ("on_train_end", trainer, logs),
    ]
    assert callback.threads and threading.current_thread().name not in callback.threads


class Context(Callback):
    """Asks for the context arguments every hook may have."""

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def on_validation_end(self, trainer, pl_module, epoch):
        self.seen.append((trainer, pl_module, epoch))


def test_adapter_hooks_ask_for_trainer_and_pl_module_by_name():
    # Prepare
    context = Context()
    trainer = Trainer(max_epochs=1, callbacks=[LightningCallbackAdapter([context], on_error="raise")], **QUIET)
    model = TinyRegression()

    # Execute
    trainer.fit(model, loader(), loader())

    # Assert
    assert context.seen == [(trainer, model, 0)]
