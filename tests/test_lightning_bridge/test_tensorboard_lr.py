"""TensorBoard events read back with TensorBoard's own reader; LR schedules against torch's schedulers."""

from __future__ import annotations

import time

import pytest
import torch
from bridge_helpers import QUIET, Seed000Recorder, TinyRegression, loader
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from callbacks import LRScheduler, MetricsLogger, ModelCheckpoint, TensorBoard
from lightning_bridge import LightningCallbackAdapter


def scalars(log_dir):
    """``{tag: [(step, value), ...]}`` of every event file under ``log_dir``."""
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_writes_batch_loss_per_step_and_epoch_metrics_per_epoch(tmp_path):
    # Prepare
    recorder = Seed000Recorder()
    natives = [recorder, LRScheduler(scheduler_type="step", step_size=1, gamma=0.5), TensorBoard(log_dir=str(tmp_path))]
    trainer = Trainer(max_epochs=2, callbacks=[LightningCallbackAdapter(natives, on_error="raise")], **QUIET)

    # Execute
    trainer.fit(TinyRegression(), loader(samples=12), loader())

    # Assert: one event file; 3 steps per epoch; epoch metrics at step = epoch
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    logged = scalars(tmp_path)
    assert sorted(logged) == ["avg_loss", "lr", "train/batch_loss", "val_loss"]
    assert [step for step, _ in logged["train/batch_loss"]] == list(range(6))
    assert [value for _, value in logged["train/batch_loss"]] == pytest.approx([float(x) for x in recorder.step_losses])
    for tag in ("avg_loss", "val_loss", "lr"):
        assert logged[tag] == [(e, pytest.approx(logs[tag])) for e, logs in enumerate(recorder.epoch_logs)]
    assert [value for _, value in logged["lr"]] == pytest.approx([0.1, 0.05])


def next_second():
    """Wait for the clock's next second: event files are named by the second they were opened in, and
    TensorBoard reads them in name order (two in one second sort by a counter that is no clock)."""
    opened = int(time.time())
    while int(time.time()) == opened:
        time.sleep(0.01)


def natives_with_tensorboard(out):
    """The README's drop-in natives: checkpoints at validation end, TensorBoard events, a metrics file."""
    return [
        ModelCheckpoint(save_dir=str(out / "ckpt"), save_every=1, metric="val_loss", mode="min"),
        TensorBoard(log_dir=str(out / "tb")),
        MetricsLogger(path=str(out / "metrics.csv")),
    ]


def fit_with_lightning_checkpoints(natives, out, max_epochs, ckpt_path=None):
    checkpoint = LightningModelCheckpoint(dirpath=out / "lightning", save_last=True)
    adapter = LightningCallbackAdapter(natives, on_error="raise")
    trainer = Trainer(max_epochs=max_epochs, callbacks=[adapter, checkpoint], **{**QUIET, "enable_checkpointing": True})
    trainer.fit(TinyRegression(), loader(), loader(), ckpt_path=ckpt_path)


@pytest.mark.parametrize("last", ["ckpt/last.ckpt", "lightning/last.ckpt"], ids=["native", "lightning"])
def test_tensorboard_resumed_from_the_last_checkpoint_logs_each_step_once(last, tmp_path):
    # Prepare: 7 epochs in one go, and 4 then on to 7 from a last.ckpt: the native one, written at
    # validation end, or Lightning's, written at the end of the training epoch
    fit_with_lightning_checkpoints(natives_with_tensorboard(tmp_path / "a"), tmp_path / "a", max_epochs=7)
    fit_with_lightning_checkpoints(natives_with_tensorboard(tmp_path / "b"), tmp_path / "b", max_epochs=4)
    resumed = natives_with_tensorboard(tmp_path / "b")
    next_second()

    # Execute
    fit_with_lightning_checkpoints(resumed, tmp_path / "b", max_epochs=7, ckpt_path=str(tmp_path / "b" / last))

    # Assert: each epoch and each batch step once, with the values of the uninterrupted run
    logged, uninterrupted = scalars(tmp_path / "b" / "tb"), scalars(tmp_path / "a" / "tb")
    assert [step for step, _ in logged["avg_loss"]] == list(range(7))
    assert [step for step, _ in logged["train/batch_loss"]] == list(range(14))
    assert sorted(logged) == sorted(uninterrupted)
    for tag, points in uninterrupted.items():
        assert logged[tag] == [(step, pytest.approx(value)) for step, value in points], tag
    assert [row["epoch"] for row in resumed[2].history] == list(range(7))


SCHEDULES = {
    "step": {"step_size": 2, "gamma": 0.5},
    "multistep": {"milestones": [1, 3], "gamma": 0.5},
    "exponential": {"gamma": 0.8},
    "cosine": {"T_max": 4, "eta_min": 0.01},
    "plateau": {"factor": 0.5, "patience": 0, "metric": "score", "mode": "max"},
}


def reference_lrs(kind, args, scores, epochs, lr=0.1):
    """The learning rate of each epoch when torch's own scheduler steps once per epoch."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    if kind == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=args["mode"], factor=args["factor"], patience=args["patience"]
        )
    else:
        cls = {
            "step": torch.optim.lr_scheduler.StepLR,
            "multistep": torch.optim.lr_scheduler.MultiStepLR,
            "exponential": torch.optim.lr_scheduler.ExponentialLR,
            "cosine": torch.optim.lr_scheduler.CosineAnnealingLR,
        }[kind]
        scheduler = cls(optimizer, **args)
    lrs = []
    for epoch in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step(scores[epoch]) if kind == "plateau" else scheduler.step()
    return lrs, optimizer.param_groups[0]["lr"]


@pytest.mark.parametrize("kind", sorted(SCHEDULES))
def test_lr_scheduler_steps_the_trainer_optimizer_per_epoch_as_torch_would(kind, tmp_path):
    # Prepare: the plateau schedule watches a score that stalls in epochs 1, 3 and 4
    scores = [1.0, 1.0, 2.0, 2.0, 2.0]
    history = MetricsLogger(path=None)
    recorder = Seed000Recorder()
    natives = [recorder, LRScheduler(scheduler_type=kind, **SCHEDULES[kind]), history]
    trainer = Trainer(max_epochs=5, callbacks=[LightningCallbackAdapter(natives, on_error="raise")], **QUIET)
    expected, final = reference_lrs(kind, SCHEDULES[kind], scores, epochs=5)

    # Execute
    trainer.fit(TinyRegression(lr=0.1, scores=scores), loader(), loader())

    # Assert: the `lr` logged per epoch is the one the optimizer trained that epoch with
    assert [row["lr"] for row in history.history] == pytest.approx(expected)
    per_step = [lr for lr in expected for _batch in range(2)]
    assert [metrics["lr"] for metrics in recorder.step_metrics] == pytest.approx(per_step)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(final)
    assert len(set(expected)) > 1


class WithOwnScheduler(TinyRegression):
    """Returns a StepLR of its own beside its optimizer."""

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.lr)
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5)}


def test_lr_scheduler_beside_the_modules_own_scheduler_warns_once_naming_both():
    # Prepare
    adapter = LightningCallbackAdapter([LRScheduler(scheduler_type="step", step_size=1, gamma=0.5)], on_error="raise")
    trainer = Trainer(max_epochs=2, callbacks=[adapter], **QUIET)

    # Execute
    with pytest.warns(UserWarning) as caught:
        trainer.fit(WithOwnScheduler(), loader(), loader())

    # Assert
    messages = [str(w.message) for w in caught if "LRScheduler(" in str(w.message)]
    assert len(messages) == 1
    assert messages[0].startswith(
        "LRScheduler(scheduler_type='step') and the LightningModule's own StepLR from `configure_optimizers` both "
        "step the learning rate of the same optimizers"
    )


def test_lr_scheduler_alone_does_not_warn_of_other_schedulers(recwarn):
    # Execute
    adapter = LightningCallbackAdapter([LRScheduler(scheduler_type="step", step_size=1)], on_error="raise")
    Trainer(max_epochs=1, callbacks=[adapter], **QUIET).fit(TinyRegression(), loader(), loader())

    # Assert
    assert not [w for w in recwarn if "LRScheduler(" in str(w.message)]
