"""CallbackManager: order, name binding, async dispatch, skipped hooks and the error policy."""

from __future__ import annotations

import asyncio
import logging
import threading
from types import SimpleNamespace

import pytest

from callbacks import HOOK_ARGUMENTS, Callback, CallbackManager, HookSignatureError

# --------------------------------------------------------------------------------------------
# Helpers: callbacks that copy the two native interfaces' signatures exactly, and drivers that
# fire their flows through a manager.
# --------------------------------------------------------------------------------------------


class Seed000Recorder(Callback):
    """A TrainingEngine callback (seed 000): every hook with the seed's own signature."""

    def __init__(self, name, record):
        self.name = name
        self.record = record

    def on_train_start(self):
        self.record.append((self.name, "on_train_start", {}))

    def on_epoch_start(self, epoch):
        self.record.append((self.name, "on_epoch_start", {"epoch": epoch}))

    def on_batch_start(self, epoch, batch_idx):
        self.record.append((self.name, "on_batch_start", {"epoch": epoch, "batch_idx": batch_idx}))

    def on_train_step_end(self, epoch, batch_idx, loss, metrics):
        args = {"epoch": epoch, "batch_idx": batch_idx, "loss": loss, "metrics": metrics}
        self.record.append((self.name, "on_train_step_end", args))

    def on_batch_end(self, epoch, batch_idx):
        self.record.append((self.name, "on_batch_end", {"epoch": epoch, "batch_idx": batch_idx}))

    def on_validation_start(self, epoch):
        self.record.append((self.name, "on_validation_start", {"epoch": epoch}))

    def on_validation_end(self, epoch, logs):
        self.record.append((self.name, "on_validation_end", {"epoch": epoch, "logs": logs}))

    def on_save_checkpoint(self, epoch):
        self.record.append((self.name, "on_save_checkpoint", {"epoch": epoch}))

    def on_epoch_end(self, epoch, logs):
        self.record.append((self.name, "on_epoch_end", {"epoch": epoch, "logs": logs}))

    def on_exception(self, exception):
        self.record.append((self.name, "on_exception", {"exception": exception}))

    def on_train_end(self):
        self.record.append((self.name, "on_train_end", {}))


class Seed003Recorder(Callback):
    """A federated callback (seed 003): every hook ``async`` with the seed's own signature.

    Each hook yields to the loop between an ``enter`` and an ``exit`` entry, so the record shows
    whether one callback's hook finished before the next one's started.
    """

    def __init__(self, name, record):
        self.name = name
        self.record = record

    async def _log(self, hook, args, kwargs):
        self.record.append((self.name, hook, "enter", args, kwargs))
        await asyncio.sleep(0)
        self.record.append((self.name, hook, "exit"))

    async def on_train_start(self, trainer, **kwargs):
        await self._log("on_train_start", {"trainer": trainer}, kwargs)

    async def on_train_end(self, trainer, result, **kwargs):
        await self._log("on_train_end", {"trainer": trainer, "result": result}, kwargs)

    async def on_round_start(self, trainer, round_num, **kwargs):
        await self._log("on_round_start", {"trainer": trainer, "round_num": round_num}, kwargs)

    async def on_round_end(self, trainer, round_num, result, **kwargs):
        await self._log("on_round_end", {"trainer": trainer, "round_num": round_num, "result": result}, kwargs)

    async def on_epoch_start(self, learner, epoch, **kwargs):
        await self._log("on_epoch_start", {"learner": learner, "epoch": epoch}, kwargs)

    async def on_epoch_end(self, learner, epoch, metrics, **kwargs):
        await self._log("on_epoch_end", {"learner": learner, "epoch": epoch, "metrics": metrics}, kwargs)

    async def on_aggregate_start(self, trainer, updates, **kwargs):
        await self._log("on_aggregate_start", {"trainer": trainer, "updates": updates}, kwargs)

    async def on_aggregate_end(self, trainer, weights, **kwargs):
        await self._log("on_aggregate_end", {"trainer": trainer, "weights": weights}, kwargs)


class OnlyEpochEnd(Callback):
    def __init__(self, record):
        self.record = record

    def on_epoch_end(self, epoch, logs):
        self.record.append(("sync", epoch))


class AsyncEpochEnd(Callback):
    def __init__(self, record):
        self.record = record

    async def on_epoch_end(self, epoch, logs):
        await asyncio.sleep(0)
        self.record.append(("async", epoch))


class DuckTyped:
    """Not a Callback subclass: only the hooks it has are called."""

    on_batch_start = "not callable, so not a hook"

    def __init__(self):
        self.calls = []

    def on_epoch_end(self, epoch, logs):
        self.calls.append((epoch, logs))


class WithDefaults(Callback):
    def __init__(self):
        self.seen = []

    def on_train_start(self, trainer, pl_module=None, verbose=True, tag="default"):
        self.seen.append((trainer, pl_module, verbose, tag))


class NeedsOptimizer(Callback):
    def on_batch_end(self, epoch, batch_idx, optimizer):
        pass


class Boom(Callback):
    def on_epoch_end(self, epoch, logs):
        raise RuntimeError("boom in hook")


class AsyncBoom(Callback):
    async def on_epoch_end(self, epoch, logs):
        await asyncio.sleep(0)
        raise RuntimeError("async boom")


class FailingEnd(Callback):
    """Raises ``RuntimeError(message)`` in ``on_exception`` and ``on_train_end``."""

    def __init__(self, message):
        self.message = message

    def on_exception(self, exception):
        raise RuntimeError(f"{self.message} in on_exception")

    def on_train_end(self):
        raise RuntimeError(f"{self.message} in on_train_end")


class EndRecorder(Callback):
    def __init__(self, record):
        self.record = record

    def on_exception(self, exception):
        self.record.append("on_exception")

    def on_train_end(self):
        self.record.append("on_train_end")


class Interrupting(Callback):
    def __init__(self, exc_type):
        self.exc_type = exc_type

    def on_epoch_end(self, epoch, logs):
        raise self.exc_type()


class AsyncInterrupting(Interrupting):
    async def on_epoch_end(self, epoch, logs):
        raise self.exc_type()


class QueueWorker(Callback):
    """Opens async resources in one hook (a queue and a worker task) and uses them in later ones."""

    def __init__(self):
        self.consumed = []

    async def on_train_start(self, trainer, **kwargs):
        self.queue = asyncio.Queue()
        self.worker = asyncio.create_task(self._consume())

    async def _consume(self):
        while True:
            item = await self.queue.get()
            self.consumed.append(item)
            self.queue.task_done()

    async def on_round_end(self, trainer, round_num, result, **kwargs):
        await self.queue.put(round_num)

    async def on_train_end(self, trainer, result, **kwargs):
        await self.queue.join()
        self.worker.cancel()
        await asyncio.gather(self.worker, return_exceptions=True)


LOSS = 0.25
METRICS = {"acc": 0.5}
LOGS = {"val_loss": 0.123}
EPOCH_LOGS = {"avg_loss": 0.3, "val_loss": 0.123}


def run_seed000_flow(manager, engine):
    """One epoch of two batches in the seed-000 order, supplying what a driver supplies."""
    manager.call("on_train_start", trainer=engine)
    manager.call("on_epoch_start", trainer=engine, epoch=0, learner="model")
    for batch_idx in range(2):
        manager.call("on_batch_start", trainer=engine, epoch=0, batch_idx=batch_idx)
        manager.call("on_train_step_end", trainer=engine, epoch=0, batch_idx=batch_idx, loss=LOSS, metrics=METRICS)
        manager.call("on_batch_end", trainer=engine, epoch=0, batch_idx=batch_idx)
    manager.call("on_validation_start", trainer=engine, epoch=0)
    manager.call("on_validation_end", trainer=engine, epoch=0, logs=LOGS)
    manager.call("on_save_checkpoint", trainer=engine, epoch=0, path="last.ckpt")
    manager.call("on_epoch_end", trainer=engine, epoch=0, logs=EPOCH_LOGS, learner="model", metrics=EPOCH_LOGS)
    manager.call("on_exception", trainer=engine, exception=KeyError("k"))
    manager.call("on_train_end", trainer=engine, result=None)


def expected_seed000(names):
    """The record ``run_seed000_flow`` should leave: each hook on every callback, in list order."""
    events = [("on_train_start", {}), ("on_epoch_start", {"epoch": 0})]
    for b in range(2):
        events += [
            ("on_batch_start", {"epoch": 0, "batch_idx": b}),
            ("on_train_step_end", {"epoch": 0, "batch_idx": b, "loss": LOSS, "metrics": METRICS}),
            ("on_batch_end", {"epoch": 0, "batch_idx": b}),
        ]
    events += [
        ("on_validation_start", {"epoch": 0}),
        ("on_validation_end", {"epoch": 0, "logs": LOGS}),
        ("on_save_checkpoint", {"epoch": 0}),
        ("on_epoch_end", {"epoch": 0, "logs": EPOCH_LOGS}),
    ]
    record = [(name, hook, args) for hook, args in events for name in names]
    record += [(name, "on_exception", "KeyError") for name in names]
    record += [(name, "on_train_end", {}) for name in names]
    return record


def normalise(record):
    """Exceptions compare by identity: keep their type name for the assertion."""
    return [(n, h, type(a["exception"]).__name__) if h == "on_exception" else (n, h, a) for n, h, a in record]


SERVER = SimpleNamespace(should_stop=False)
RESULT = SimpleNamespace(metrics={"accuracy": 0.9}, updates=[])
UPDATES = [SimpleNamespace(client_id=0, num_samples=10, weights={}, metrics={})]


def run_seed003_round(manager):
    """One federated round with one local epoch, supplying what the round loop supplies."""
    manager.call("on_train_start", trainer=SERVER)
    manager.call("on_round_start", trainer=SERVER, round_num=1)
    manager.call("on_epoch_start", trainer=SERVER, learner="client-0", epoch=0, round_num=1)
    metrics = {"loss": 0.4}
    client_epoch = {"learner": "client-0", "epoch": 0, "round_num": 1}
    manager.call("on_epoch_end", trainer=SERVER, metrics=metrics, logs=metrics, **client_epoch)
    manager.call("on_aggregate_start", trainer=SERVER, updates=UPDATES)
    manager.call("on_aggregate_end", trainer=SERVER, weights={"w": 1})
    manager.call("on_round_end", trainer=SERVER, round_num=1, result=RESULT)
    manager.call("on_train_end", trainer=SERVER, result=RESULT)


def expected_seed003(names):
    events = [
        ("on_train_start", {"trainer": SERVER}, {}),
        ("on_round_start", {"trainer": SERVER, "round_num": 1}, {}),
        ("on_epoch_start", {"learner": "client-0", "epoch": 0}, {"trainer": SERVER, "round_num": 1}),
        (
            "on_epoch_end",
            {"learner": "client-0", "epoch": 0, "metrics": {"loss": 0.4}},
            {"trainer": SERVER, "logs": {"loss": 0.4}, "round_num": 1},
        ),
        ("on_aggregate_start", {"trainer": SERVER, "updates": UPDATES}, {}),
        ("on_aggregate_end", {"trainer": SERVER, "weights": {"w": 1}}, {}),
        ("on_round_end", {"trainer": SERVER, "round_num": 1, "result": RESULT}, {}),
        ("on_train_end", {"trainer": SERVER, "result": RESULT}, {}),
    ]
    record = []
    for hook, args, kwargs in events:
        for name in names:
            record += [(name, hook, "enter", args, kwargs), (name, hook, "exit")]
    return record


def in_running_loop(fn):
    """Call ``fn`` synchronously from inside ``asyncio.run(main())``, as a sync ``fit`` would be."""

    async def main():
        asyncio.get_running_loop()  # a loop is running in this thread
        return fn()

    return asyncio.run(main())


def in_jupyter_like_loop(fn):
    """Call ``fn`` from a callback of a loop running forever in this thread, as a notebook cell runs."""
    loop = asyncio.new_event_loop()
    outcome = {}

    def cell():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed back to the test
            outcome["error"] = exc
        finally:
            loop.stop()

    try:
        loop.call_soon(cell)
        loop.run_forever()
    finally:
        loop.close()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def no_loop(fn):
    return fn()


RUNNERS = {"no running loop": no_loop, "asyncio.run": in_running_loop, "loop in thread": in_jupyter_like_loop}


# --------------------------------------------------------------------------------------------
# Order and arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("runner", list(RUNNERS))
def test_manager_seed000_callbacks_get_hooks_in_order_with_their_arguments(runner):
    # Prepare
    record = []
    manager = CallbackManager([Seed000Recorder("a", record), Seed000Recorder("b", record)])

    # Execute
    RUNNERS[runner](lambda: run_seed000_flow(manager, SimpleNamespace()))

    # Assert
    assert normalise(record) == expected_seed000(["a", "b"])


@pytest.mark.parametrize("runner", list(RUNNERS))
def test_manager_seed003_async_hooks_are_awaited_in_order_with_kwargs(runner):
    # Prepare
    record = []
    manager = CallbackManager([Seed003Recorder("a", record), Seed003Recorder("b", record)])

    # Execute
    RUNNERS[runner](lambda: run_seed003_round(manager))

    # Assert: each hook of "a" finished before the same hook of "b" began, all with kwargs as named
    assert record == expected_seed003(["a", "b"])


@pytest.mark.parametrize("runner", list(RUNNERS))
def test_manager_mixes_sync_and_async_callbacks_in_list_order(runner):
    # Prepare
    record = []
    manager = CallbackManager([AsyncEpochEnd(record), OnlyEpochEnd(record), AsyncEpochEnd(record)])

    # Execute
    def two_epochs():
        for epoch in range(2):
            manager.call("on_epoch_end", epoch=epoch, logs={})

    RUNNERS[runner](two_epochs)

    # Assert
    assert record == [("async", 0), ("sync", 0), ("async", 0), ("async", 1), ("sync", 1), ("async", 1)]


@pytest.mark.parametrize("runner", list(RUNNERS))
def test_manager_async_resources_persist_between_calls(runner):
    # Prepare
    worker = QueueWorker()
    manager = CallbackManager([worker], on_error="raise")

    # Execute: the queue and task opened in on_train_start serve the later hooks
    def federation():
        manager.call("on_train_start", trainer=SERVER)
        for round_num in (1, 2, 3):
            manager.call("on_round_end", trainer=SERVER, round_num=round_num, result=RESULT)
        manager.call("on_train_end", trainer=SERVER, result=RESULT)

    RUNNERS[runner](federation)

    # Assert
    assert worker.consumed == [1, 2, 3]
    assert worker.worker.cancelled()


def test_manager_async_hooks_run_from_a_worker_thread():
    # Prepare
    record = []
    manager = CallbackManager([AsyncEpochEnd(record)])

    # Execute
    thread = threading.Thread(target=lambda: manager.call("on_epoch_end", epoch=3, logs={}))
    thread.start()
    thread.join(timeout=10)

    # Assert
    assert record == [("async", 3)]


# --------------------------------------------------------------------------------------------
# Binding: skipped hooks, duck typing, defaults, rejected signatures
# --------------------------------------------------------------------------------------------


def test_manager_skips_hooks_nobody_overrides():
    # Prepare
    record = []

    # Execute
    manager = CallbackManager([OnlyEpochEnd(record), Callback()])
    manager.call("on_batch_start", epoch=0, batch_idx=0)
    manager.call("on_epoch_end", epoch=0, logs={})

    # Assert
    assert manager.overrides("on_epoch_end")
    assert [hook for hook in HOOK_ARGUMENTS if manager.overrides(hook)] == ["on_epoch_end"]
    assert record == [("sync", 0)]


def test_manager_calls_hooks_of_duck_typed_objects():
    # Prepare
    duck = DuckTyped()
    manager = CallbackManager([duck, object()])

    # Execute
    manager.call("on_batch_start", epoch=0, batch_idx=0)
    manager.call("on_epoch_end", epoch=1, logs={"val_loss": 0.5}, learner=None)

    # Assert
    assert not manager.overrides("on_batch_start")
    assert duck.calls == [(1, {"val_loss": 0.5})]


def test_manager_keeps_defaults_of_arguments_not_supplied():
    # Prepare
    callback = WithDefaults()
    manager = CallbackManager([callback])

    # Execute: `pl_module` is a known argument this event leaves out; `verbose`/`tag` are unknown
    manager.call("on_train_start", trainer="T")
    manager.call("on_train_start", trainer="T", pl_module="M")

    # Assert
    assert callback.seen == [("T", None, True, "default"), ("T", "M", True, "default")]


def test_manager_rejects_a_required_argument_no_event_supplies():
    # Execute
    with pytest.raises(HookSignatureError) as info:
        CallbackManager([NeedsOptimizer()])

    # Assert: callback, hook, argument and the arguments that exist
    message = str(info.value)
    assert "NeedsOptimizer.on_batch_end" in message
    assert "`optimizer`" in message
    assert "batch_idx, epoch, pl_module, trainer" in message


def test_manager_names_an_argument_the_driver_did_not_supply():
    # Prepare
    manager = CallbackManager([OnlyEpochEnd([])], on_error="raise")

    # Execute
    with pytest.raises(HookSignatureError, match=r"OnlyEpochEnd\.on_epoch_end` needs `logs`.*supplies: epoch"):
        manager.call("on_epoch_end", epoch=0)


def test_manager_rejects_an_unknown_error_policy():
    with pytest.raises(ValueError, match="`on_error` can be 'warn' or 'raise', got 'ignore'"):
        CallbackManager([], on_error="ignore")


def test_manager_keeps_callbacks_in_the_order_given():
    # Prepare
    first, second = Callback(), Callback()

    # Execute
    manager = CallbackManager([first, second])

    # Assert
    assert list(manager) == [first, second]
    assert len(manager) == 2


# --------------------------------------------------------------------------------------------
# Error policy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("failing", [Boom, AsyncBoom])
def test_manager_warn_logs_callback_hook_and_traceback_and_goes_on(failing, caplog):
    # Prepare
    record = []
    manager = CallbackManager([failing(), OnlyEpochEnd(record)])

    # Execute
    with caplog.at_level(logging.WARNING, logger="callbacks.manager"):
        manager.call("on_epoch_end", epoch=0, logs={})

    # Assert
    assert record == [("sync", 0)]
    (entry,) = caplog.records
    assert failing.__name__ in entry.getMessage()
    assert "on_epoch_end" in entry.getMessage()
    assert entry.exc_info is not None
    assert "Traceback (most recent call last)" in caplog.text
    assert "RuntimeError" in caplog.text


@pytest.mark.parametrize("failing", [Boom, AsyncBoom])
def test_manager_raise_reraises_and_stops_the_hook(failing):
    # Prepare
    record = []
    manager = CallbackManager([failing(), OnlyEpochEnd(record)], on_error="raise")

    # Execute
    with pytest.raises(RuntimeError, match="boom"):
        manager.call("on_epoch_end", epoch=0, logs={})

    # Assert
    assert record == []


@pytest.mark.parametrize("hook", ["on_exception", "on_train_end"])
def test_manager_raise_runs_an_end_hook_on_every_callback_then_raises_the_first_error(hook, caplog):
    # Prepare
    record = []
    manager = CallbackManager(
        [FailingEnd("first"), EndRecorder(record), FailingEnd("second"), EndRecorder(record)], on_error="raise"
    )

    # Execute
    with pytest.raises(RuntimeError, match=rf"^first in {hook}$"):
        manager.call(hook, exception=ValueError("fit failed"), trainer=SERVER, result=RESULT)

    # Assert: the callbacks after each failing one still had the hook, the later error is logged
    assert record == [hook, hook]
    (entry,) = caplog.records
    assert entry.getMessage().startswith(f"Callback FailingEnd raised in {hook} too")
    assert "second in" in caplog.text


@pytest.mark.parametrize("runner", ["no running loop", "asyncio.run"])
@pytest.mark.parametrize("kind", [Interrupting, AsyncInterrupting])
@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_manager_interrupts_propagate_under_warn(exc_type, kind, runner):
    # Prepare
    record = []
    manager = CallbackManager([kind(exc_type), OnlyEpochEnd(record)], on_error="warn")

    # Execute
    with pytest.raises(exc_type):
        RUNNERS[runner](lambda: manager.call("on_epoch_end", epoch=0, logs={}))

    # Assert: nothing after the interrupt ran, and async dispatch still works afterwards
    assert record == []
    later = []
    RUNNERS[runner](lambda: CallbackManager([AsyncEpochEnd(later)]).call("on_epoch_end", epoch=1, logs={}))
    assert later == [("async", 1)]
