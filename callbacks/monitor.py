"""Shared handling of a monitored metric: ``metric``, ``mode`` and ``min_delta``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from callbacks.arguments import check_number
from callbacks.callback import Callback
from callbacks.exceptions import MetricNotFoundError

__all__ = ["MonitorCallback"]

Mode = Literal["min", "max"]


class MonitorCallback(Callback):
    """Base of callbacks that watch one metric for improvement (EarlyStopping, ModelCheckpoint).

    Its state is the best value so far; a subclass adds its own keys to :meth:`state_dict` and
    reads them back in :meth:`load_state_dict`, both through ``super()``. A loaded state sets
    ``_restored``, for ``on_train_start`` to keep it instead of starting afresh.

    Args:
        metric: The name of the watched metric, e.g. ``"val_loss"`` or ``"accuracy"``.
        mode: ``"min"`` if smaller is better, ``"max"`` if larger is better.
        min_delta: The smallest change that counts as an improvement. Defaults to ``0.0``.

    Raises:
        ValueError: ``mode`` is not ``"min"``/``"max"`` or ``metric`` is empty.
        ArgumentError: ``min_delta`` is not a number >= 0.

    Example:
        >>> watch = MonitorCallback(metric="val_loss", mode="min")
        >>> watch.improves(0.5), watch.improves(0.7)
        (True, False)
    """

    def __init__(self, metric: str, mode: Mode, min_delta: float = 0.0) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"`mode` can be 'min' or 'max', got {mode!r}")
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"`metric` must be a non-empty metric name, got {metric!r}")
        check_number("min_delta", min_delta, low=0.0)
        self.metric = metric
        self.mode: Mode = mode
        self.min_delta = float(min_delta)
        self.best: float | None = None
        self._restored = False

    @property
    def state_key(self) -> str:
        return f"{type(self).__qualname__}{{'metric': {self.metric!r}, 'mode': {self.mode!r}}}"

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict["best"]
        self._restored = True

    def read(self, metrics: Mapping[str, Any], where: str) -> float:
        """Return ``metrics[self.metric]`` as a float.

        Raises:
            MetricNotFoundError: The metric is missing; the message lists the metrics there are.
        """
        if self.metric not in metrics:
            available = ", ".join(sorted(metrics)) or "none"
            raise MetricNotFoundError(
                f"{type(self).__name__} watches `{self.metric}`, which is not in the {where}; "
                f"available: {available}. HINT: log it, or set `metric` to one of those"
            )
        return float(metrics[self.metric])

    def improves(self, current: float) -> bool:
        """Whether ``current`` beats the best value by more than ``min_delta``; updates ``best``."""
        if math.isnan(current):
            return False
        if self.best is None:
            better = True
        elif self.mode == "min":
            better = current < self.best - self.min_delta
        else:
            better = current > self.best + self.min_delta
        if better:
            self.best = current
        return better
