"""The base of strategies that keep every update of a round: robust aggregates rank over all of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from callbacks import ArgumentError
from federated.strategies.strategy import Strategy

if TYPE_CHECKING:
    from federated.messages import ClientUpdate, StateDict

__all__ = ["BufferedStrategy"]


class BufferedStrategy(Strategy):
    """A strategy that keeps every update of the round and aggregates them all at once in ``aggregate``.

    Robust aggregates (a median, a trimmed mean) rank each coordinate over all clients, so they
    cannot fold updates into a running sum: the round holds K states in memory.

    One that needs a number of updates per round (Krum's ``n >= 2f + 3``) says so in
    :meth:`unmet_requirement`: the federation refuses to be built with fewer clients per round,
    and a round that failures leave with too few updates fails in :meth:`finish_round`.

    Args:
        local_keys: State-dict names (glob patterns) never aggregated; see :class:`~federated.Strategy`.
            Defaults to none.
    """

    def __init__(self, *, local_keys: Sequence[str] = ()) -> None:
        super().__init__(local_keys=local_keys)
        self._states: list[StateDict] = []
        self._round_num = 0

    def begin_federation(self, num_clients: int, clients_per_round: int) -> None:
        unmet = self.unmet_requirement(clients_per_round)
        if unmet is not None:
            argument, needed, rule = unmet
            value = getattr(self, argument)
            raise ArgumentError(
                argument,
                f"{value!r} needs at least {needed} updates per round ({rule}), but each round selects "
                f"{clients_per_round} clients; select at least {needed}{' or lower it' if value > 0 else ''}",
            )

    def begin_round(self, round_num: int, weights: StateDict) -> None:
        self._states = []
        self._round_num = round_num

    def accumulate(self, update: ClientUpdate) -> None:
        if update.weights is None:
            raise ValueError(f"the update of client {update.client_id} has no weights (already folded in?)")
        self._states.append(update.weights)

    def finish_round(self) -> dict[str, torch.Tensor]:
        if not self._states:
            raise ValueError(f"{type(self).__name__} cannot finish a round without updates")
        states, self._states = self._states, []
        unmet = self.unmet_requirement(len(states))
        if unmet is not None:
            argument, needed, rule = unmet
            raise ValueError(
                f"round {self._round_num}: {type(self).__name__} received {len(states)} updates, but needs at least "
                f"{needed} ({rule}, `{argument}={getattr(self, argument)!r}`): the round's other clients failed"
            )
        return self.aggregate(states)

    def unmet_requirement(self, num_updates: int) -> tuple[str, int, str] | None:
        """What ``num_updates`` updates in a round are too few for, or ``None``; always ``None`` here.

        Returns:
            The argument that sets the requirement, the updates it needs and the rule (``"n >= 2f + 3"``).
        """
        return None

    def aggregate(self, states: list[StateDict]) -> dict[str, torch.Tensor]:
        """The new global weights from the round's states."""
        raise NotImplementedError(f"{type(self).__name__} must implement `aggregate(states)`")
