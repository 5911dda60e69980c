"""The base of strategies that keep every update of a round: robust aggregates rank over all of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from federated.strategies.strategy import Strategy

if TYPE_CHECKING:
    from federated.messages import ClientUpdate, StateDict

__all__ = ["BufferedStrategy"]


class BufferedStrategy(Strategy):
    """A strategy that keeps every update of the round and aggregates them all at once in ``aggregate``.

    Robust aggregates (a median, a trimmed mean) rank each coordinate over all clients, so they
    cannot fold updates into a running sum: the round holds K states in memory.

    Args:
        local_keys: State-dict names (glob patterns) never aggregated; see :class:`~federated.Strategy`.
            Defaults to none.
    """

    def __init__(self, *, local_keys: Sequence[str] = ()) -> None:
        super().__init__(local_keys=local_keys)
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
