"""What a client fit records and sets around ``lightning.Trainer.fit``: epoch metrics, LR scale, optimizer states."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback as LightningCallback

from lightning_bridge.metrics import StepLosses, first_lr, floats

__all__ = ["ClientProbe", "load_optimizer_state", "step_only_names"]


class ClientProbe(LightningCallback):
    """Scales the client's learning rates for the fit and records each epoch's metrics as floats.

    An epoch's metrics are the trainer's epoch-level ``callback_metrics``, its ``lr`` (first
    optimizer, first group) and, unless the module logs its own at epoch level, ``train_loss``:
    the mean of the step losses, summed on the device (no ``self.log`` needed, no host sync per
    step). A value the module logs with ``on_step=True, on_epoch=False`` (and the ``<name>_step``
    half of one logged with both) is a single step's, not the epoch's: it is left out.
    """

    def __init__(self) -> None:
        self.lr_scale = 1.0
        self.keep = False
        self.restore: dict[str, Any] | None = None
        self.optimizer_state: dict[str, Any] | None = None
        self.epoch_metrics: list[dict[str, float]] = []
        self._lrs: list[float] = []
        self._losses: list[torch.Tensor] = []  # each epoch's mean step loss
        self._steps = StepLosses()
        self._step_only: set[str] = set()

    def start(self, lr_scale: float, *, keep: bool = False, restore: dict[str, Any] | None = None) -> None:
        """Begin a fit at ``lr_scale``; with ``keep``, start from ``restore`` and record the optimizer states."""
        self.lr_scale = float(lr_scale)
        self.keep = keep
        self.restore, self.optimizer_state = (restore if keep else None), None
        self.epoch_metrics, self._lrs, self._losses = [], [], []
        self._steps = StepLosses()
        self._step_only = set()

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # optimizers exist from here on; before the adapter's on_fit_start, so native schedulers see the scaled LR
        if self.restore is not None:
            load_optimizer_state(trainer, self.restore)
        if self.lr_scale == 1.0:
            return
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] *= self.lr_scale
                if "initial_lr" in group:
                    group["initial_lr"] *= self.lr_scale
        for config in trainer.lr_scheduler_configs:
            base_lrs = getattr(config.scheduler, "base_lrs", None)
            if base_lrs is not None:
                config.scheduler.base_lrs = [lr * self.lr_scale for lr in base_lrs]

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._record(trainer)  # the previous epoch, with what its end logged
        lr = first_lr(trainer.optimizers)
        if lr is not None:
            self._lrs.append(lr)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._steps.add(outputs)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        mean = self._steps.mean()
        if mean is not None:
            self._losses.append(mean)
        self._steps = StepLosses()
        self._step_only |= step_only_names(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._record(trainer)
        if not self.keep:
            return
        self.optimizer_state = {
            "optimizers": [_to_cpu(optimizer.state_dict()) for optimizer in trainer.optimizers],
            "schedulers": [_to_cpu(config.scheduler.state_dict()) for config in trainer.lr_scheduler_configs],
            "lr_scale": self.lr_scale,
        }

    def _record(self, trainer: Trainer) -> None:
        # `current_epoch` counts completed epochs here; the metrics of one still stand at the next start
        while len(self.epoch_metrics) < trainer.current_epoch:
            index = len(self.epoch_metrics)
            logged: dict[str, Any] = {k: v for k, v in trainer.callback_metrics.items() if k not in self._step_only}
            if index < len(self._losses) and "train_loss" not in logged:
                logged["train_loss"] = self._losses[index]
            metrics = floats(logged)
            if index < len(self._lrs):
                metrics["lr"] = self._lrs[index]
            self.epoch_metrics.append(metrics)


def step_only_names(trainer: Trainer) -> set[str]:
    """The names in ``trainer.callback_metrics`` that hold one training step's value, not an epoch's.

    Those of metrics the training logged with ``on_step=True, on_epoch=False``, and the ``_step``
    names of those logged with both (whose plain and ``_epoch`` names hold the epoch's value).
    """
    names: set[str] = set()
    for metric in trainer.fit_loop.epoch_loop._results.values():
        meta = metric.meta
        if meta.on_step:
            names.add(meta.forked_name(True))
    return names


def load_optimizer_state(trainer: Trainer, saved: Mapping[str, Any]) -> None:
    """Continue the fit's optimizers and LR schedulers from a previous fit's ``saved`` states.

    Moments and step counts come back as they were. Learning rates do not compound the server's
    scale of the previous fit: an optimizer's rate is the module's (the probe then applies this
    fit's scale), and a scheduler continues its schedule from its last rate divided by the scale
    it ran under.

    Raises:
        ValueError: The module configures a different number of optimizers or schedulers now.
    """
    optimizers, configs = trainer.optimizers, trainer.lr_scheduler_configs
    if len(optimizers) != len(saved["optimizers"]) or len(configs) != len(saved["schedulers"]):
        raise ValueError(
            f"the client's kept optimizer state holds {len(saved['optimizers'])} optimizer(s) and "
            f"{len(saved['schedulers'])} scheduler(s), the module configures {len(optimizers)} and {len(configs)}"
        )
    for optimizer, state in zip(optimizers, saved["optimizers"], strict=True):
        groups = optimizer.param_groups
        rates: list[dict[str, Any]] = [{k: g[k] for k in ("lr", "initial_lr") if k in g} for g in groups]
        optimizer.load_state_dict(state)
        for group, rate in zip(optimizer.param_groups, rates, strict=True):
            group.update(rate)
    for config, state in zip(configs, saved["schedulers"], strict=True):
        scheduler = config.scheduler
        base_lrs = getattr(scheduler, "base_lrs", None)
        scheduler.load_state_dict(state)
        if base_lrs is not None:
            scheduler.base_lrs = base_lrs
        for group, lr in zip(scheduler.optimizer.param_groups, state.get("_last_lr") or [], strict=False):
            group["lr"] = lr / saved["lr_scale"]


def _to_cpu(value: Any) -> Any:
    """``value`` with every tensor in it copied to the CPU (optimizer states hold them in dicts and lists)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value
