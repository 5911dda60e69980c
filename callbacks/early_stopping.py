"""Stop training when a watched metric has stopped improving."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callbacks.arguments import check_number
from callbacks.monitor import Mode, MonitorCallback
from callbacks.registry import register
from callbacks.trainer import FederatedTrainerLike, TrainerLike

__all__ = ["EarlyStopping"]


@register("callback.early_stopping")
class EarlyStopping(MonitorCallback):
    """Sets ``trainer.should_stop`` after ``patience`` checks without improvement of ``metric``.

    Centralised it checks ``logs[metric]`` at each ``on_validation_end``; in the federated round
    loop it checks ``result.metrics[metric]`` at each ``on_round_end``.

    Args:
        patience: Checks without improvement before stopping. Defaults to ``10``.
        metric: The metric to watch. Defaults to ``"accuracy"``.
        mode: ``"max"`` if larger is better, ``"min"`` if smaller is. Defaults to ``"max"``.
        min_delta: The smallest change that counts as improvement. Defaults to ``0.0``.

    Raises:
        ArgumentError: ``patience`` is not an int >= 1, or ``min_delta`` not a number >= 0.
        ValueError: A bad ``metric`` or ``mode``.

    Example:
        >>> from types import SimpleNamespace
        >>> stop = EarlyStopping(patience=1, metric="val_loss", mode="min")
        >>> trainer = SimpleNamespace(should_stop=False)
        >>> for epoch, loss in enumerate([0.5, 0.6]):
        ...     stop.on_validation_end(trainer, epoch, {"val_loss": loss})
        >>> trainer.should_stop, stop.stopped_at
        (True, 1)
    """

    def __init__(
        self, patience: int = 10, metric: str = "accuracy", mode: Mode = "max", min_delta: float = 0.0
    ) -> None:
        super().__init__(metric=metric, mode=mode, min_delta=min_delta)
        check_number("patience", patience, low=1, integer=True)
        self.patience = patience
        self.counter = 0
        self.stopped_at: int | None = None

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        return {**state, "counter": self.counter, "stopped_at": self.stopped_at, "patience": self.patience}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.counter = state_dict["counter"]
        self.stopped_at = state_dict["stopped_at"]
        self.patience = state_dict["patience"]  # as Lightning's EarlyStopping: the run goes on as it was

    def on_train_start(self, trainer: TrainerLike, **kwargs: Any) -> None:
        if self._restored:  # resuming: keep the state just loaded
            self._restored = False
            return
        self.best, self.counter, self.stopped_at = None, 0, None

    def on_validation_end(self, trainer: TrainerLike, epoch: int, logs: Mapping[str, float], **kwargs: Any) -> None:
        self._check(trainer, self.read(logs, "validation logs"), epoch)

    def on_round_end(self, trainer: FederatedTrainerLike, round_num: int, result: Any, **kwargs: Any) -> None:
        self._check(trainer, self.read(result.metrics, "round metrics"), round_num)

    def _check(self, trainer: TrainerLike, current: float, step: int) -> None:
        if self.improves(current):
            self.counter = 0
            return
        self.counter += 1
        if self.counter >= self.patience:
            self.stopped_at = step
            trainer.should_stop = True
