"""A strategy around another: every member delegated, so that a concern (DP, attacks in a test) wraps any strategy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from federated.strategies.strategy import Strategy

if TYPE_CHECKING:
    from federated.client.algorithm import ClientAlgorithm
    from federated.messages import ClientUpdate, StateDict

__all__ = ["StrategyWrapper"]


class StrategyWrapper(Strategy):
    """Delegates every member of :class:`~federated.Strategy` to ``inner``; subclasses override what they change.

    ``local_keys`` are the inner strategy's. The state is the inner strategy's under ``"inner"``,
    beside the wrapper's own (:meth:`wrapper_state_dict`), so wrappers nest.

    Args:
        inner: The strategy wrapped.

    Example:
        >>> from federated.messages import ClientUpdate
        >>> from federated.strategies.fedavg import FedAvg
        >>> class Doubled(StrategyWrapper):
        ...     def accumulate(self, update):
        ...         update.weights = {k: 2 * v for k, v in update.weights.items()}
        ...         super().accumulate(update)
        >>> s = Doubled(FedAvg())
        >>> s.begin_round(1, {"w": torch.zeros(1)})
        >>> s.accumulate(ClientUpdate(client_id=0, num_samples=1, weights={"w": torch.ones(1)}))
        >>> s.finish_round()
        {'w': tensor([2.])}
    """

    def __init__(self, inner: Strategy) -> None:
        if not isinstance(inner, Strategy):
            raise TypeError(f"{type(self).__name__} wraps a Strategy, got {type(inner).__name__}")
        self.inner = inner

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"

    @property
    def local_keys(self) -> tuple[str, ...]:  # type: ignore[override]  # the inner strategy's, never set here
        return self.inner.local_keys

    def is_local(self, name: str) -> bool:
        return self.inner.is_local(name)

    def client_algorithms(self) -> list[ClientAlgorithm]:
        return self.inner.client_algorithms()

    def begin_federation(self, num_clients: int, clients_per_round: int) -> None:
        self.inner.begin_federation(num_clients, clients_per_round)

    def begin_round(self, round_num: int, weights: StateDict) -> None:
        self.inner.begin_round(round_num, weights)

    def configure_fit(self, client_id: int, round_num: int) -> dict[str, Any]:
        return self.inner.configure_fit(client_id, round_num)

    def configure_evaluate(self, client_id: int, round_num: int) -> dict[str, Any]:
        return self.inner.configure_evaluate(client_id, round_num)

    def accumulate(self, update: ClientUpdate) -> None:
        self.inner.accumulate(update)

    def finish_round(self) -> dict[str, torch.Tensor]:
        return self.inner.finish_round()

    def round_metrics(self) -> dict[str, float]:
        return self.inner.round_metrics()

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(), **self.wrapper_state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.inner.load_state_dict(state_dict.get("inner", {}))
        self.load_wrapper_state_dict({k: v for k, v in state_dict.items() if k != "inner"})

    def wrapper_state_dict(self) -> dict[str, Any]:
        """The wrapper's own state, beside the inner strategy's; empty by default."""
        return {}

    def load_wrapper_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`wrapper_state_dict` returned."""
