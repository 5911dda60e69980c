"""What the strategies share: argument checks and the base of strategies that keep every update."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from federated.fedavg import FedAvg
from federated.strategy import Strategy

if TYPE_CHECKING:
    from federated.aggregate import StateDict
    from federated.results import ClientUpdate

__all__ = ["BufferedStrategy", "ServerStep", "check_number", "clone_state", "load_moments"]


def check_number(
    name: str,
    value: Any,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = True,
    hint: str = "",
) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` naming ``name``, the value and the range allowed.

    Example:
        >>> check_number("beta_1", 0.9, low=0.0, high=1.0)
        0.9
        >>> check_number("tau", 0, low=0.0, low_open=True)
        Traceback (most recent call last):
        ...
        ValueError: `tau` must be a number in (0, inf), got 0
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"`{name}` must be a number in {span}, got {value!r}{'; ' + hint if hint else ''}")
    return float(value)


def clone_state(state: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """A copy of an optimizer buffer for ``state_dict()`` (empty when there is none yet)."""
    return {name: t.detach().clone() for name, t in (state or {}).items()}


def load_moments(state: Any, key: str) -> dict[str, torch.Tensor] | None:
    """The buffer saved under ``key`` by :func:`clone_state`, copied; ``None`` when it was empty."""
    buffer = state.get(key) or {}
    if not isinstance(buffer, dict) or not all(isinstance(t, torch.Tensor) for t in buffer.values()):
        raise ValueError(f"the strategy state's `{key}` must map tensor names to tensors, got {type(buffer).__name__}")
    return {name: t.detach().clone() for name, t in buffer.items()} or None


class BufferedStrategy(Strategy):
    """A strategy that keeps every update of the round and aggregates them all at once in ``aggregate``.

    Robust aggregates (a median, a trimmed mean) rank each coordinate over all clients, so they
    cannot fold updates into a running sum: the round holds K states in memory.
    """

    def __init__(self) -> None:
        self._states: list[StateDict] = []

    def begin_round(self, round_num: int, weights: StateDict) -> None:
        self._states = []

    def accumulate(self, update: ClientUpdate) -> None:
        if update.weights is None:
            raise ValueError(f"the update of client {update.client_id} has no weights (already folded in?)")
        self._states.append(update.weights)

    def finish_round(self) -> dict[str, torch.Tensor]:
        if not self._states:
            raise ValueError(f"{type(self).__name__} cannot finish a round without updates")
        states, self._states = self._states, []
        return self.aggregate(states)

    def aggregate(self, states: list[StateDict]) -> dict[str, torch.Tensor]:
        """The new global weights from the round's states."""
        raise NotImplementedError(f"{type(self).__name__} must implement `aggregate(states)`")


class ServerStep(FedAvg):
    """FedAvg's streaming mean, then a server update from the weights the round started with."""

    _global: StateDict | None = None

    def begin_round(self, round_num: int, weights: StateDict) -> None:
        super().begin_round(round_num, weights)
        self._global = weights

    def finish_round(self) -> dict[str, torch.Tensor]:
        mean = super().finish_round()
        if self._global is None:
            raise ValueError(f"{type(self).__name__} needs `begin_round(round_num, weights)` before `finish_round()`")
        weights = self.server_step(self._global, mean)
        self._global = None
        return weights

    def server_step(self, global_weights: StateDict, mean: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The new global weights from the round's starting ones and the clients' mean."""
        raise NotImplementedError(f"{type(self).__name__} must implement `server_step(global_weights, mean)`")
