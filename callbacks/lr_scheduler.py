"""Learning-rate schedules: per epoch on the trainer's optimizers, or per round for the clients."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, ExponentialLR, MultiStepLR, ReduceLROnPlateau, StepLR
from torch.optim.lr_scheduler import LRScheduler as TorchLRScheduler

from callbacks.arguments import check_number
from callbacks.callback import Callback
from callbacks.monitor import Mode
from callbacks.rank_zero import is_global_zero
from callbacks.registry import register
from callbacks.trainer import FederatedTrainerLike, TrainerLike

__all__ = ["SCHEDULER_TYPES", "LRScheduler"]

SCHEDULER_TYPES = ("step", "multistep", "exponential", "cosine", "plateau")
SchedulerType = Literal["step", "multistep", "exponential", "cosine", "plateau"]


@register("callback.lr_scheduler")
class LRScheduler(Callback):
    """Steps a torch learning-rate scheduler once per epoch (centralised) or per round (federated).

    Centralised it schedules the optimizers of the ``lightning.Trainer`` and steps at each
    ``on_epoch_end``; a fit whose LightningModule returns schedulers of its own from
    ``configure_optimizers`` is warned at its start, naming them, as both would step the learning rate.
    In the federated round loop the schedule is the server's: it runs on a learning rate of 1.0 and sets
    ``trainer.client_lr_scale`` at each ``on_round_start``, so every client of the round trains with its
    own base learning rate times that scale; it steps at ``on_round_end``. The value in use is added to
    the event's dict before the step, for the callbacks after this one: ``lr`` (of the first optimizer)
    in the epoch logs, ``lr_scale`` in the round metrics.

    Args:
        scheduler_type: One of ``step``, ``multistep``, ``exponential``, ``cosine``, ``plateau``.
            Defaults to ``"step"``.
        step_size: Period of ``step``. Defaults to ``10``.
        gamma: Decay factor of ``step``, ``multistep`` and ``exponential``. Defaults to ``0.1``.
        T_max: Half period of ``cosine``, in steps. Defaults to ``100``.
        eta_min: Floor of ``cosine`` (relative to 1.0 in the federated loop). Defaults to ``0.0``.
        milestones: Steps where ``multistep`` decays. Defaults to ``[30, 60, 90]``.
        factor: Decay of ``plateau``. Defaults to ``0.1``.
        patience: Steps without improvement before ``plateau`` decays. Defaults to ``10``.
        metric: The metric ``plateau`` watches. Defaults to ``"val_loss"``.
        mode: ``"min"`` or ``"max"``, for ``plateau``. Defaults to ``"min"``.

    Raises:
        ValueError: Unknown ``scheduler_type`` or ``mode``.
        ArgumentError: ``step_size`` or ``T_max`` is not an int >= 1, or ``gamma`` or ``factor`` not a number > 0.

    Example:
        >>> from types import SimpleNamespace
        >>> sched = LRScheduler(scheduler_type="step", step_size=1, gamma=0.5)
        >>> server = SimpleNamespace(client_lr_scale=1.0)
        >>> for round_num in (1, 2, 3):
        ...     sched.on_round_start(server, round_num)
        ...     sched.on_round_end(server, round_num, SimpleNamespace(metrics={}))
        >>> server.client_lr_scale
        0.25
    """

    def __init__(
        self,
        scheduler_type: SchedulerType = "step",
        step_size: int = 10,
        gamma: float = 0.1,
        T_max: int = 100,  # noqa: N803 - the name of torch's argument and of the seed's YAML key
        eta_min: float = 0.0,
        milestones: list[int] | None = None,
        factor: float = 0.1,
        patience: int = 10,
        metric: str = "val_loss",
        mode: Mode = "min",
    ) -> None:
        if scheduler_type not in SCHEDULER_TYPES:
            raise ValueError(f"`scheduler_type` can be {', '.join(SCHEDULER_TYPES)}, got {scheduler_type!r}")
        check_number("step_size", step_size, low=1, integer=True)
        check_number("T_max", T_max, low=1, integer=True)
        check_number("gamma", gamma, low=0.0, low_open=True)
        check_number("factor", factor, low=0.0, low_open=True)
        if mode not in ("min", "max"):
            raise ValueError(f"`mode` can be 'min' or 'max', got {mode!r}")
        self.scheduler_type = scheduler_type
        self.step_size = step_size
        self.gamma = gamma
        self.T_max = T_max
        self.eta_min = eta_min
        self.milestones = list(milestones) if milestones is not None else [30, 60, 90]
        self.factor = factor
        self.patience = patience
        self.metric = metric
        self.mode: Mode = mode
        self.schedulers: list[TorchLRScheduler | ReduceLROnPlateau] = []
        self._pending: list[dict[str, Any]] | None = None
        self._probe: torch.optim.Optimizer | None = None

    @property
    def state_key(self) -> str:
        return f"LRScheduler{{'scheduler_type': {self.scheduler_type!r}}}"

    def state_dict(self) -> dict[str, Any]:
        if not self.schedulers:
            return {"schedulers": self._pending or []}
        return {"schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = list(state_dict["schedulers"])
        if self.schedulers:
            self._load_pending()

    def make(self, optimizer: torch.optim.Optimizer) -> TorchLRScheduler | ReduceLROnPlateau:
        """Build the configured torch scheduler on ``optimizer``."""
        kind = self.scheduler_type
        if kind == "step":
            return StepLR(optimizer, step_size=self.step_size, gamma=self.gamma)
        if kind == "multistep":
            return MultiStepLR(optimizer, milestones=self.milestones, gamma=self.gamma)
        if kind == "exponential":
            return ExponentialLR(optimizer, gamma=self.gamma)
        if kind == "cosine":
            return CosineAnnealingLR(optimizer, T_max=self.T_max, eta_min=self.eta_min)
        return ReduceLROnPlateau(optimizer, mode=self.mode, factor=self.factor, patience=self.patience)

    def on_train_start(self, trainer: TrainerLike, **kwargs: Any) -> None:
        optimizers = getattr(trainer, "optimizers", None)
        if optimizers:  # centralised: the trainer's own optimizers
            self._warn_of_own_schedulers(trainer)
            self.schedulers = [self.make(opt) for opt in optimizers]
            self._load_pending()

    def _warn_of_own_schedulers(self, trainer: TrainerLike) -> None:
        """Warn, once per fit, when the model's ``configure_optimizers`` returned schedulers of its own."""
        own = [type(config.scheduler).__name__ for config in getattr(trainer, "lr_scheduler_configs", None) or ()]
        if own and is_global_zero(trainer):
            warnings.warn(
                f"LRScheduler(scheduler_type={self.scheduler_type!r}) and the LightningModule's own "
                f"{', '.join(own)} from `configure_optimizers` both step the learning rate of the same optimizers: "
                "every decay is applied twice. HINT: return no scheduler from `configure_optimizers`, or leave "
                "out the LRScheduler callback",
                UserWarning,
                stacklevel=2,
            )

    def on_epoch_end(
        self, epoch: int, logs: Mapping[str, float], round_num: int | None = None, **kwargs: Any
    ) -> None:
        if round_num is None and self.schedulers:
            _report(logs, "lr", self._lr())
            self._step(logs)

    def on_round_start(self, trainer: FederatedTrainerLike, round_num: int, **kwargs: Any) -> None:
        if not self.schedulers:
            self._probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
            self.schedulers = [self.make(self._probe)]
            self._probe.step()  # no gradients: a no-op that tells torch the optimizer steps before the schedule
            self._load_pending()
        trainer.client_lr_scale = self._lr()

    def on_round_end(self, trainer: FederatedTrainerLike, round_num: int, result: Any, **kwargs: Any) -> None:
        if self.schedulers:
            _report(result.metrics, "lr_scale", self._lr())
        self._step(result.metrics)

    def _lr(self) -> float:
        """The learning rate in use: the first schedule's optimizer, first parameter group."""
        return float(self.schedulers[0].optimizer.param_groups[0]["lr"])

    def _step(self, metrics: Mapping[str, float]) -> None:
        for scheduler in self.schedulers:
            if isinstance(scheduler, ReduceLROnPlateau):
                if self.metric in metrics:
                    scheduler.step(float(metrics[self.metric]))
            else:
                scheduler.step()

    def _load_pending(self) -> None:
        if self._pending:
            if len(self._pending) != len(self.schedulers):
                raise ValueError(
                    f"the saved LRScheduler state holds {len(self._pending)} schedulers, but there are "
                    f"{len(self.schedulers)} optimizers to schedule now"
                )
            for scheduler, state in zip(self.schedulers, self._pending, strict=True):
                scheduler.load_state_dict(state)
                # The optimizer of a federated schedule is not checkpointed: its LR comes from here.
                for group, lr in zip(scheduler.optimizer.param_groups, scheduler.get_last_lr(), strict=True):
                    group["lr"] = lr
        self._pending = None


def _report(metrics: Mapping[str, Any], key: str, value: float) -> None:
    # Later callbacks of the same event (MetricsLogger, TensorBoard) see the LR in use.
    if isinstance(metrics, MutableMapping):
        metrics[key] = float(value)
