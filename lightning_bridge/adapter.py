"""Native callbacks inside ``lightning.Trainer``: the seed-000 event flow on Lightning's hooks."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback as LightningCallback
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from callbacks import CallbackManager, OnError
from callbacks import ModelCheckpoint as NativeModelCheckpoint
from callbacks.callback import stateful_callbacks
from lightning_bridge import _last_checkpoint
from lightning_bridge._epoch_record import EpochRecord
from lightning_bridge._sources import CallbackSource, load_natives
from lightning_bridge.checkpoint_io import RecordingCheckpointIO
from lightning_bridge.metrics import first_lr, floats

__all__ = ["LightningCallbackAdapter"]

_PENDING = "lightning_bridge:epoch_in_progress"
"""Key, in the adapter's checkpointed state, of the epoch whose native end hooks were still due."""


class LightningCallbackAdapter(LightningCallback):
    """A Lightning callback that runs native callbacks, unchanged, inside ``Trainer.fit``.

    An epoch dispatches the seed-000 flow: ``on_epoch_start``; per batch ``on_batch_start``,
    ``on_train_step_end`` (``loss`` a detached tensor) and ``on_batch_end``; ``on_validation_start``
    and ``on_validation_end`` (``logs`` of floats; never for the sanity check);
    ``on_save_checkpoint(epoch, path)`` for each file once it is on disk; ``on_epoch_end`` (``logs``:
    the trainer's metrics as floats, this epoch's validation metrics, ``avg_loss`` and ``lr``) after
    Lightning's checkpoint callbacks. ``on_train_start`` comes first, before the sanity check, and
    ``on_train_end`` exactly once and last, also after ``on_exception`` or an early stop.

    ``trainer.should_stop = True`` in a native hook stops the run, on every rank under DDP (every
    rank sees global rank 0's ``logs``). Native callbacks' states go into Lightning checkpoints and
    come back with ``fit(ckpt_path=...)``, together with the end hooks still due in the epoch the
    checkpoint was written in; ``fit(ckpt_path="last")`` finds a native ``ModelCheckpoint``'s
    ``last.ckpt``. ``docs/lightning.md`` has the details.

    Args:
        callbacks: Native callbacks; or ``{type, args}`` entries to build; or the path of a YAML file
            (or a mapping) holding a ``callbacks:`` list. Defaults to none.
        on_error: ``"warn"`` logs a failing native hook and goes on, ``"raise"`` fails the fit.
            Defaults to ``"warn"``.

    Raises:
        ConfigError: A configuration entry is wrong.
        ValueError: Two native callbacks share a ``state_key``.

    Example:
        >>> import lightning as L
        >>> from callbacks import EarlyStopping
        >>> adapter = LightningCallbackAdapter([EarlyStopping(metric="val_loss", mode="min")])
        >>> trainer = L.Trainer(callbacks=[adapter], logger=False, enable_progress_bar=False)
    """

    def __init__(self, callbacks: CallbackSource = None, on_error: OnError = "warn") -> None:
        natives = load_natives(callbacks)
        self.manager = CallbackManager(natives, on_error=on_error)
        # end hooks, one callback at a time, on the same (OiaFed callbacks: the same wrapped) objects
        self._each = [CallbackManager([cb], on_error=on_error) for cb in self.manager.callbacks]
        self._stateful = stateful_callbacks(natives)
        self._on_batch_start = self.manager.overrides("on_batch_start")
        self._on_train_step_end = self.manager.overrides("on_train_step_end")
        self._on_batch_end = self.manager.overrides("on_batch_end")
        self._switch_off_unused_batch_hooks()
        self._started = False
        self._ended = False
        self._distributed = False
        self._stop_requested = False
        self._io: RecordingCheckpointIO | None = None
        self._holding = 0  # native hooks running: the files they write are reported once they return
        self._epoch_end = _NativeEpochEnd(self)
        self._record = EpochRecord()
        self._restored: dict[str, Any] | None = None  # the record of a checkpoint, until the fit resumes it
        self._last_logs: dict[str, float] = {}

    def _switch_off_unused_batch_hooks(self) -> None:
        # Lightning calls each callable hook of each callback at every step (about 2 µs apiece, in
        # its profiler context): per-batch hooks the adapter has no use for are switched off here
        for hook in _PER_BATCH_HOOKS:
            if getattr(type(self), hook) is getattr(LightningCallback, hook):  # unless a subclass uses it
                setattr(self, hook, None)
        if not self._on_batch_start and type(self).on_train_batch_start is _ADAPTER_BATCH_START:
            self.on_train_batch_start = None  # type: ignore[assignment]  # bookkeeping moves to batch end

    @classmethod
    def from_config(
        cls, source: Mapping[str, Any] | str | os.PathLike[str], on_error: OnError = "warn"
    ) -> LightningCallbackAdapter:
        """Build the adapter from a YAML file path or a mapping holding a ``callbacks:`` list.

        Raises:
            ConfigError: One line naming the file and the key path of the wrong entry.

        Example:
            >>> adapter = LightningCallbackAdapter.from_config({"callbacks": [{"type": "early_stopping"}]})
            >>> [type(cb).__name__ for cb in adapter.callbacks]
            ['EarlyStopping']
        """
        return cls(source if isinstance(source, (str, os.PathLike)) else dict(source), on_error=on_error)

    @property
    def callbacks(self) -> list[Any]:
        """The native callbacks, in dispatch order."""
        return self.manager.callbacks

    def last_checkpoints(self) -> list[str]:
        """The ``last.ckpt`` files of the native ``ModelCheckpoint`` callbacks that are on disk.

        ``trainer.fit(ckpt_path="last")`` chooses the newest of these and Lightning's own last checkpoints.
        """
        paths = [os.path.join(cb.save_dir, "last.ckpt") for cb in self.callbacks if _keeps_last(cb)]
        return [path for path in paths if os.path.isfile(path)]

    @property
    @override
    def state_key(self) -> str:
        # one key whatever the natives: adding a callback or changing a path between runs must not
        # orphan the others' states (each native's own `state_key` picks its state out of this one)
        return type(self).__qualname__

    @override
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {key: cb.state_dict() for key, cb in self._stateful.items()}
        if self._record.epoch is not None:
            state[_PENDING] = self._record.state_dict(callbacks=len(self._each))
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        unclaimed = []
        for key, state in state_dict.items():
            if key in self._stateful:
                self._stateful[key].load_state_dict(copy.deepcopy(state))
            elif key != _PENDING:
                unclaimed.append(key)
        if unclaimed:
            rank_zero_warn(
                f"The checkpoint holds native callback states that no callback here claims: {', '.join(unclaimed)}. "
                "A state goes back to the callback with the same `state_key` (class and distinguishing arguments)."
            )
        pending = state_dict.get(_PENDING)
        self._restored = copy.deepcopy(pending) if pending else None

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit" and not isinstance(trainer.strategy.checkpoint_io, RecordingCheckpointIO):
            trainer.strategy.checkpoint_io = RecordingCheckpointIO(trainer.strategy.checkpoint_io)
        io = trainer.strategy.checkpoint_io
        self._io = io if isinstance(io, RecordingCheckpointIO) else None
        if self._io is not None:
            self._io.on_written = partial(self._report_saved, trainer)
        # Trainer.callbacks is set by Lightning's callback connector, unknown to the type checker
        callbacks: list[LightningCallback] = trainer.callbacks  # type: ignore[attr-defined]
        if stage == "fit" and self._epoch_end not in callbacks:
            # Lightning calls checkpoint callbacks last, in list order: this one comes after them all
            trainer.callbacks = [*callbacks, self._epoch_end]  # type: ignore[attr-defined]

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._detach(trainer)

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._started, self._ended, self._stop_requested = True, False, False
        self._distributed = trainer.world_size > 1
        self._record = EpochRecord()
        if self._io is not None:
            self._io.written.clear()  # files written before this fit (another fit's, a tuner's) are not its own
        self._call("on_train_start", trainer=trainer, pl_module=pl_module)
        restored, self._restored = self._restored, None
        if restored is not None:
            self._resume(trainer, pl_module, restored)

    @override
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._record.epoch is not None:  # Lightning skipped the end of a restored epoch: it is still owed
            self._finish_epoch(trainer, pl_module)
        epoch = trainer.current_epoch
        self._record.begin(epoch)
        self._call("on_epoch_start", epoch=epoch, learner=pl_module, trainer=trainer, pl_module=pl_module)

    @override
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        record = self._record
        if record.epoch is None:  # resumed in the middle of an epoch
            record.begin(trainer.current_epoch)
        if self._on_batch_start:
            self._call("on_batch_start", epoch=record.epoch, batch_idx=batch_idx, trainer=trainer, pl_module=pl_module)

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # per step: no host sync, no tensor op beyond one add; Lightning's own loss is already detached
        record = self._record
        if record.epoch is None:  # resumed in the middle of an epoch
            record.begin(trainer.current_epoch)
        loss = record.losses.add(outputs)
        if not (self._on_train_step_end or self._on_batch_end):
            return
        epoch = record.epoch
        if self._on_train_step_end:
            lr = first_lr(trainer.optimizers)
            metrics = {"lr": lr} if lr is not None else {}
            self._call(
                "on_train_step_end", epoch=epoch, batch_idx=batch_idx, loss=loss, metrics=metrics,
                trainer=trainer, pl_module=pl_module,
            )
        if self._on_batch_end:
            self._call("on_batch_end", epoch=epoch, batch_idx=batch_idx, trainer=trainer, pl_module=pl_module)

    @override
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        if self._record.epoch is None:
            self._record.begin(trainer.current_epoch)
        self._record.validation_starts(trainer.callback_metrics)
        self._call("on_validation_start", epoch=trainer.current_epoch, trainer=trainer, pl_module=pl_module)

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        metrics = trainer.callback_metrics
        fresh = self._record.fresh(metrics)
        logs = floats(metrics)
        if self._distributed:
            logs, fresh = trainer.strategy.broadcast((logs, fresh), src=0)
        self._record.validated(logs, fresh)
        self._dispatch_each(
            "on_validation_end", 0, epoch=trainer.current_epoch, logs=logs, trainer=trainer, pl_module=pl_module
        )
        self._sync_stop(trainer)

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # the logs are read here, where the other callbacks read theirs; the native epoch end waits for
        # the checkpoint callbacks, which Lightning calls after the LightningModule's on_train_epoch_end
        if self._record.epoch is not None and self._record.logs is None:
            self._record.logs = self._collect_epoch_logs(trainer)

    def _end_training_epoch(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Lightning's ``on_train_epoch_end`` has reached every callback: the native epoch end is due."""
        if self._record.epoch is None:  # Lightning replays the end of a restored epoch whose native hooks all ran
            self._wait_for_saves()
            return
        self._finish_epoch(trainer, pl_module)

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._detach(trainer)  # Lightning calls no teardown hook after an exception
        if self._started and not self._ended:
            try:
                self.manager.call("on_exception", exception=exception, trainer=trainer, pl_module=pl_module)
            finally:  # on_train_end comes also when an on_exception hook raised (on_error="raise")
                self._end(trainer, pl_module, None)

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._started and not self._ended:  # the strategy's teardown has waited for background saves
            self._end(trainer, pl_module, dict(self._last_logs))

    def _detach(self, trainer: Trainer) -> None:
        callbacks: list[LightningCallback] = trainer.callbacks  # type: ignore[attr-defined]
        if self._epoch_end in callbacks:
            trainer.callbacks = [cb for cb in callbacks if cb is not self._epoch_end]  # type: ignore[attr-defined]

    def _end(self, trainer: Trainer, pl_module: LightningModule, result: Any) -> None:
        self._ended = True
        self.manager.call("on_train_end", trainer=trainer, result=result, pl_module=pl_module)

    def _finish_epoch(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Dispatch the native ``on_epoch_end`` of the epoch in progress, after its checkpoints."""
        record = self._record
        self._wait_for_saves()
        if record.logs is None:
            record.logs = self._collect_epoch_logs(trainer)
        logs = self._last_logs = record.logs
        self._dispatch_each(
            "on_epoch_end", record.resume_index("on_epoch_end"), epoch=record.epoch, logs=logs, metrics=logs,
            learner=pl_module, trainer=trainer, pl_module=pl_module,
        )
        self._wait_for_saves()  # the files written by these hooks belong to this epoch too
        record.end()
        self._sync_stop(trainer)

    def _collect_epoch_logs(self, trainer: Trainer) -> dict[str, float]:
        """The epoch's logs: trainer metrics (validation ones only if validation ran), avg_loss, lr."""
        logs = self._record.train_logs(floats(trainer.callback_metrics))
        total, count = self._record.loss_total()
        if self._distributed:  # every rank takes part, also one that had no loss to report
            device = trainer.strategy.root_device
            stats = torch.stack(
                [torch.as_tensor(total, device=device).float(), torch.tensor(float(count), device=device)]
            )
            total, count = trainer.strategy.reduce(stats, reduce_op="sum").tolist()
        if count:
            logs["avg_loss"] = float(total / count)
        lr = first_lr(trainer.optimizers)
        if lr is not None:
            logs["lr"] = lr
        if self._distributed:
            logs = trainer.strategy.broadcast(logs, src=0)
        return logs

    def _resume(self, trainer: Trainer, pl_module: LightningModule, restored: Mapping[str, Any]) -> None:
        """Take up the epoch that was in progress when the checkpoint was written."""
        record = self._record = EpochRecord.from_state_dict(restored)
        if record.stage is not None and record.stage[0] == "on_validation_end":
            self._dispatch_each(
                "on_validation_end", record.stage[1], epoch=record.epoch, logs=record.val_end_logs,
                trainer=trainer, pl_module=pl_module,
            )
            self._sync_stop(trainer)

    def _dispatch_each(self, hook: str, start: int, /, **available: Any) -> None:
        """Dispatch ``hook`` one callback at a time from ``start``, keeping track of how far it got."""
        self._holding += 1
        try:
            for index in range(start, len(self._each)):
                self._record.stage = (hook, index)
                self._call(hook, self._each[index], **available)
            self._record.stage = (hook, len(self._each))
        finally:
            self._holding -= 1
        self._report_saved(available["trainer"])

    def _call(self, hook: str, manager: CallbackManager | None = None, /, **available: Any) -> None:
        """Dispatch ``hook``, then report the files it wrote; under DDP a stop set by a native hook
        waits for the next rank sync."""
        manager = self.manager if manager is None else manager
        trainer = available["trainer"]
        before = self._distributed and trainer.should_stop  # per batch: no property read in one process
        self._holding += 1
        try:
            manager.call(hook, **available)
        finally:
            self._holding -= 1
        if self._distributed and trainer.should_stop and not before:
            trainer.should_stop = False
            self._stop_requested = True
        if self._io is not None and self._io.written:
            self._report_saved(trainer)

    def _sync_stop(self, trainer: Trainer) -> None:
        if not self._distributed:
            return
        stop = trainer.strategy.reduce_boolean_decision(self._stop_requested or trainer.should_stop, all=False)
        self._stop_requested = False
        trainer.should_stop = trainer.should_stop or stop

    def _report_saved(self, trainer: Trainer) -> None:
        """Dispatch ``on_save_checkpoint`` for each file on disk not reported yet (global rank 0 writes,
        so only it reports), unless native hooks are running: then once they have returned."""
        io = self._io
        if io is None or not io.written or self._holding or not self._started or self._ended:
            return
        last = self._record.last_epoch
        epoch = last if last is not None else trainer.current_epoch
        self._holding += 1
        try:
            while io.written:  # a native on_save_checkpoint may write a file in turn
                path = io.written.pop(0)
                pl_module = trainer.lightning_module
                self._call("on_save_checkpoint", epoch=epoch, path=path, trainer=trainer, pl_module=pl_module)
        finally:
            self._holding -= 1

    def _wait_for_saves(self) -> None:
        if self._io is not None:
            self._io.wait()


class _NativeEpochEnd(Checkpoint):
    """Runs the native epoch end of a :class:`LightningCallbackAdapter` during ``fit``.

    Lightning calls ``on_train_epoch_end`` of checkpoint callbacks after all other callbacks and the
    LightningModule, and its ``ModelCheckpoint`` saves there: appended after those, this one lets
    the native ``on_epoch_end`` follow their files.
    """

    def __init__(self, adapter: LightningCallbackAdapter) -> None:
        self.adapter = adapter

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.adapter._end_training_epoch(trainer, pl_module)


def _keeps_last(callback: Any) -> bool:
    return isinstance(callback, NativeModelCheckpoint) and callback.save_last


_last_checkpoint.install()

_PER_BATCH_HOOKS = (
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
    "on_validation_batch_start",
    "on_validation_batch_end",
)
_ADAPTER_BATCH_START = LightningCallbackAdapter.on_train_batch_start
