"""Stop training before its privacy spending would pass a budget."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callbacks.arguments import check_number
from callbacks.callback import Callback
from callbacks.exceptions import MetricNotFoundError
from callbacks.registry import register
from callbacks.trainer import FederatedTrainerLike, TrainerLike

__all__ = ["PrivacyBudget"]


@register("callback.privacy_budget")
class PrivacyBudget(Callback):
    """Sets ``trainer.should_stop`` when one more round (or epoch) would spend more than ``max_epsilon``.

    It reads ``metric`` (the epsilon spent so far) and ``<metric>_next`` (the epsilon after one more
    round or epoch), which the privacy accounts publish: ``privacy/epsilon`` in the round metrics
    of a federation whose strategy is wrapped for differential privacy with a ``delta``,
    ``dp/epsilon`` in the epoch logs of DP-SGD. In the round loop it checks at ``on_round_end``;
    centralised, at ``on_epoch_end``. Where only ``metric`` is published, it stops once that has
    passed the budget. :attr:`stop_reason` says where and why it stopped; its state is checkpointed,
    so a resumed run still says it.

    Args:
        max_epsilon: The budget, above 0.
        metric: The epsilon to watch. Defaults to ``"privacy/epsilon"``.

    Raises:
        ArgumentError: ``max_epsilon`` is not a number above 0.

    Example:
        >>> from types import SimpleNamespace
        >>> budget = PrivacyBudget(max_epsilon=8.0)
        >>> trainer = SimpleNamespace(should_stop=False)
        >>> result = SimpleNamespace(metrics={"privacy/epsilon": 7.91, "privacy/epsilon_next": 8.1})
        >>> budget.on_round_end(trainer, 37, result)
        >>> trainer.should_stop, budget.stop_reason
        (True, 'stopped at round 37: epsilon 7.91 of 8')
    """

    def __init__(self, max_epsilon: float, metric: str = "privacy/epsilon") -> None:
        self.max_epsilon = float(check_number("max_epsilon", max_epsilon, low=0, low_open=True))
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"`metric` must be a non-empty metric name, got {metric!r}")
        self.metric = metric
        self.epsilon: float | None = None
        self.stopped_at: tuple[str, int] | None = None
        self._restored = False

    @property
    def stop_reason(self) -> str | None:
        """``"stopped at round 37: epsilon 7.91 of 8"`` once it stopped the run, else ``None``."""
        if self.stopped_at is None or self.epsilon is None:
            return None
        unit, step = self.stopped_at
        return f"stopped at {unit} {step}: epsilon {self.epsilon:.3g} of {self.max_epsilon:g}"

    def state_dict(self) -> dict[str, Any]:
        unit, step = self.stopped_at if self.stopped_at is not None else ("", -1)
        return {"epsilon": self.epsilon, "unit": unit, "step": step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epsilon = state_dict["epsilon"]
        self.stopped_at = (state_dict["unit"], state_dict["step"]) if state_dict["unit"] else None
        self._restored = True

    def on_train_start(self, trainer: TrainerLike, **kwargs: Any) -> None:
        if self._restored:  # resuming: keep the state just loaded (the federation keeps its should_stop)
            self._restored = False
            return
        self.epsilon, self.stopped_at = None, None

    def on_round_end(self, trainer: FederatedTrainerLike, round_num: int, result: Any, **kwargs: Any) -> None:
        self._check(trainer, result.metrics, "round", round_num)

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, logs: Mapping[str, Any], **kwargs: Any) -> None:
        if kwargs.get("round_num") is None:  # in the round loop, epochs are a client's: rounds count
            self._check(trainer, logs, "epoch", epoch)

    def _check(self, trainer: TrainerLike, metrics: Mapping[str, Any], unit: str, step: int) -> None:
        if self.metric not in metrics:
            available = ", ".join(sorted(metrics)) or "none"
            raise MetricNotFoundError(
                f"PrivacyBudget watches `{self.metric}`, which is not in the {unit}'s metrics; available: "
                f"{available}. HINT: give the strategy a privacy wrapper with a `delta`, or DP-SGD clients"
            )
        self.epsilon = float(metrics[self.metric])
        upcoming = float(metrics.get(f"{self.metric}_next", self.epsilon))
        if upcoming > self.max_epsilon:
            self.stopped_at = (unit, step)
            trainer.should_stop = True
