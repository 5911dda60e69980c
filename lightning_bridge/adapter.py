"""Native callbacks inside ``lightning.Trainer``: the seed-000 event flow on Lightning's hooks."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import yaml
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback as LightningCallback
from typing_extensions import override

from callbacks import Callback as NativeCallback
from callbacks import CallbackManager, ConfigError, OnError, build_callbacks
from lightning_bridge.checkpoint_io import RecordingCheckpointIO

__all__ = ["LightningCallbackAdapter"]

CallbackSource = Sequence[Any] | Mapping[str, Any] | str | os.PathLike[str] | None


class LightningCallbackAdapter(LightningCallback):
    """A Lightning callback that runs native callbacks, unchanged, inside ``Trainer.fit``.

    One epoch dispatches, in this order: ``on_epoch_start``; per batch ``on_batch_start``,
    ``on_train_step_end`` (``loss`` a detached tensor), ``on_batch_end``; ``on_validation_start``
    and ``on_validation_end`` (``logs`` of floats) when validation runs (never for the sanity
    check); ``on_save_checkpoint`` for each checkpoint written in the epoch; ``on_epoch_end`` (``logs``
    = ``metrics``: the trainer's metrics as floats, ``avg_loss`` and ``lr``). ``on_train_start``
    comes first, before the sanity check; ``on_train_end`` exactly once and last, also after
    ``on_exception`` or an early stop.

    ``trainer.should_stop = True`` from a native hook stops the run; under DDP the decision is
    reduced across ranks when validation ends and when the epoch ends, so every rank stops together.
    Native callbacks' ``state_dict`` go into Lightning checkpoints and come back with
    ``fit(ckpt_path=...)``.

    Args:
        callbacks: Native callbacks; or ``{type, args}`` entries to build; or a YAML file or
            mapping with a ``callbacks:`` list. Defaults to none.
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
        natives = _natives(callbacks)
        self.manager = CallbackManager(natives, on_error=on_error)
        self._stateful: dict[str, Any] = {}
        for cb in natives:
            if not _has_state(cb):
                continue
            key = getattr(cb, "state_key", type(cb).__qualname__)
            if key in self._stateful:
                raise ValueError(
                    f"two native callbacks share the state key {key!r}; give one a distinct `state_key` "
                    "so their checkpointed states do not overwrite each other"
                )
            self._stateful[key] = cb
        self._started = False
        self._ended = False
        self._distributed = False
        self._stop_requested = False
        self._io: RecordingCheckpointIO | None = None
        self._loss_sum: torch.Tensor | None = None
        self._loss_count = 0
        self._last_logs: dict[str, float] = {}

    @classmethod
    def from_config(
        cls, source: Mapping[str, Any] | str | os.PathLike[str], on_error: OnError = "warn"
    ) -> LightningCallbackAdapter:
        """Build the adapter from a YAML file path or a mapping holding a ``callbacks:`` list.

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

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(callbacks=sorted(self._stateful))

    @override
    def state_dict(self) -> dict[str, Any]:
        return {key: cb.state_dict() for key, cb in self._stateful.items()}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key, state in state_dict.items():
            if key in self._stateful:
                self._stateful[key].load_state_dict(copy.deepcopy(state))

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit" and not isinstance(trainer.strategy.checkpoint_io, RecordingCheckpointIO):
            trainer.strategy.checkpoint_io = RecordingCheckpointIO(trainer.strategy.checkpoint_io)
        io = trainer.strategy.checkpoint_io
        self._io = io if isinstance(io, RecordingCheckpointIO) else None

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._started, self._ended, self._stop_requested = True, False, False
        self._distributed = trainer.world_size > 1
        self._call("on_train_start", trainer=trainer, pl_module=pl_module)

    @override
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._loss_sum, self._loss_count = None, 0
        epoch = trainer.current_epoch
        self._call("on_epoch_start", epoch=epoch, learner=pl_module, trainer=trainer, pl_module=pl_module)

    @override
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self.manager.overrides("on_batch_start"):
            epoch = trainer.current_epoch
            self._call("on_batch_start", epoch=epoch, batch_idx=batch_idx, trainer=trainer, pl_module=pl_module)

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor):
            loss = loss.detach()
            self._loss_sum = loss.float() if self._loss_sum is None else self._loss_sum + loss
            self._loss_count += 1
        epoch = trainer.current_epoch
        if self.manager.overrides("on_train_step_end"):
            metrics = {"lr": _lr(trainer)} if trainer.optimizers else {}
            self._call(
                "on_train_step_end", epoch=epoch, batch_idx=batch_idx, loss=loss, metrics=metrics,
                trainer=trainer, pl_module=pl_module,
            )
        if self.manager.overrides("on_batch_end"):
            self._call("on_batch_end", epoch=epoch, batch_idx=batch_idx, trainer=trainer, pl_module=pl_module)

    @override
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._call("on_validation_start", epoch=trainer.current_epoch, trainer=trainer, pl_module=pl_module)

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        logs = _floats(trainer.callback_metrics)
        self._call("on_validation_end", epoch=trainer.current_epoch, logs=logs, trainer=trainer, pl_module=pl_module)
        self._sync_stop(trainer)

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch = trainer.current_epoch
        logs = _floats(trainer.callback_metrics)
        if self._loss_sum is not None:
            avg = self._loss_sum / self._loss_count
            logs["avg_loss"] = float(trainer.strategy.reduce(avg, reduce_op="mean") if self._distributed else avg)
        if trainer.optimizers:
            logs["lr"] = _lr(trainer)
        self._last_logs = logs
        self._report_saved(trainer, epoch)
        self._call(
            "on_epoch_end", epoch=epoch, logs=logs, metrics=logs, learner=pl_module,
            trainer=trainer, pl_module=pl_module,
        )
        self._report_saved(trainer, epoch)
        self._sync_stop(trainer)

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if self._started and not self._ended:
            self.manager.call("on_exception", exception=exception, trainer=trainer, pl_module=pl_module)
            self._end(trainer, pl_module, None)

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._started and not self._ended:
            self._report_saved(trainer, trainer.current_epoch)
            self._end(trainer, pl_module, dict(self._last_logs))

    def _end(self, trainer: Trainer, pl_module: LightningModule, result: Any) -> None:
        self._ended = True
        self.manager.call("on_train_end", trainer=trainer, result=result, pl_module=pl_module)

    def _call(self, hook: str, /, **available: Any) -> None:
        """Dispatch ``hook``; under DDP a stop set by a native hook waits for the next rank sync."""
        if not self._distributed:
            self.manager.call(hook, **available)
            return
        trainer = available["trainer"]
        before = trainer.should_stop
        self.manager.call(hook, **available)
        if trainer.should_stop and not before:
            trainer.should_stop = False
            self._stop_requested = True

    def _sync_stop(self, trainer: Trainer) -> None:
        if not self._distributed:
            return
        stop = trainer.strategy.reduce_boolean_decision(self._stop_requested or trainer.should_stop, all=False)
        self._stop_requested = False
        trainer.should_stop = trainer.should_stop or stop

    def _report_saved(self, trainer: Trainer, epoch: int) -> None:
        if self._io is None or not self._io.written:
            return
        written, self._io.written = self._io.written, []
        for path in written:
            pl_module = trainer.lightning_module
            self._call("on_save_checkpoint", epoch=epoch, path=path, trainer=trainer, pl_module=pl_module)


def _natives(source: CallbackSource) -> list[Any]:
    if source is None:
        return []
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            with open(path) as f:
                source = yaml.safe_load(f) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read callbacks config ({exc.strerror})", path) from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"invalid YAML: {exc}".replace("\n", " "), path) from exc
    if isinstance(source, Mapping):
        unknown = [k for k in source if k != "callbacks"]
        if unknown:
            raise ConfigError(f"unknown key `{unknown[0]}`; a callbacks config holds one key, `callbacks`", "")
        return build_callbacks(source.get("callbacks"))
    items = list(source)
    if any(isinstance(item, (Mapping, str)) for item in items):
        return build_callbacks(items)
    return items


def _has_state(callback: Any) -> bool:
    method = getattr(type(callback), "state_dict", None)
    return callable(method) and method is not NativeCallback.state_dict


def _floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Metrics as Python floats, with one device-to-host transfer for all tensor values."""
    names = [k for k, v in metrics.items() if isinstance(v, torch.Tensor) and v.numel() == 1]
    out = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if names:
        tensors = [metrics[k].detach().reshape(()).float() for k in names]
        if len({t.device for t in tensors}) > 1:
            tensors = [t.cpu() for t in tensors]
        out.update(zip(names, torch.stack(tensors).tolist(), strict=True))
    return out


def _lr(trainer: Trainer) -> float:
    return float(trainer.optimizers[0].param_groups[0]["lr"])
