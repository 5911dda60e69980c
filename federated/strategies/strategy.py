"""The strategy interface: what each client is sent and runs, and how the replies become the new weights."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from callbacks import ArgumentError

if TYPE_CHECKING:
    from federated.client.algorithm import ClientAlgorithm
    from federated.messages import ClientUpdate, StateDict

__all__ = ["Strategy"]


class Strategy:
    """Base of aggregation strategies. The round loop calls, for each round::

        strategy.begin_federation(num_clients, clients_per_round)  # once, when the federation is built
        strategy.begin_round(round_num, global_weights)
        payload = strategy.configure_fit(client_id, round_num)   # per selected client: its FitTask's payload
        strategy.accumulate(update)          # once per successful client, as it arrives
        new_weights = strategy.finish_round()

    Updates are handed over one at a time so that a strategy can keep a running sum instead of
    every update (see :class:`~federated.FedAvg`). The maths lives in pure functions
    (:mod:`federated.strategies.aggregate`); a strategy only coordinates them. Room for more: FedAdam keeps the
    weights given to ``begin_round``, applies a server optimizer to ``mean - weights`` in
    ``finish_round`` and returns its moments from :meth:`state_dict`; FedProx adds the proximal
    term on the client side and aggregates as FedAvg.

    A strategy that changes how clients train names its client algorithms
    (:meth:`client_algorithms`, :class:`~federated.client.ClientAlgorithm`): every client fit runs
    them, with what :meth:`configure_fit` put in the client's task for each (by algorithm name),
    and each update's ``payload`` brings their replies back to :meth:`accumulate`. FedProx's
    proximal term is one; SCAFFOLD sends each client the server's control variate and gets back
    the change of the client's own, which its client algorithm keeps for that client.

    State that must survive a resume (server optimizer moments, control variates) goes in
    :meth:`state_dict`, as tensors and primitives: it is stored in the federation checkpoint,
    which is read with ``torch.load(weights_only=True)``.

    ``local_keys`` (glob patterns on state-dict names, e.g. ``["*bn*"]`` for FedBN) name the
    tensors that stay with each client: the round loop never hands them to the strategy, each
    client trains and keeps its own, and the global model keeps its initial values for them.

    Args:
        local_keys: Patterns of the state-dict names that are never aggregated. Defaults to none.

    Example:
        >>> class KeepGlobal(Strategy):
        ...     def begin_round(self, round_num, weights):
        ...         self.weights = dict(weights)
        ...     def accumulate(self, update):
        ...         pass
        ...     def finish_round(self):
        ...         return self.weights
        >>> s = KeepGlobal()
        >>> s.begin_round(1, {"w": torch.ones(1)})
        >>> s.finish_round()
        {'w': tensor([1.])}
    """

    local_keys: tuple[str, ...] = ()

    def __init__(self, *, local_keys: Sequence[str] = ()) -> None:
        if isinstance(local_keys, str) or not all(isinstance(k, str) and k for k in local_keys):
            raise ArgumentError("local_keys", f"must be a list of glob patterns such as ['*bn*'], got {local_keys!r}")
        self.local_keys = tuple(local_keys)

    def is_local(self, name: str) -> bool:
        """Whether the state-dict entry ``name`` matches one of :attr:`local_keys` (it is never aggregated)."""
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.local_keys)

    def begin_federation(self, num_clients: int, clients_per_round: int) -> None:
        """Called once, when the federation is built (before a resume restores :meth:`state_dict`), with its size.

        Nothing by default. SCAFFOLD keeps ``num_clients``; a strategy that needs a number of
        updates per round (Krum's ``n >= 2f + 3``) refuses too small a round here, with an
        :class:`~callbacks.ArgumentError` naming its own argument.

        Args:
            num_clients: How many clients the federation has (SCAFFOLD divides by it).
            clients_per_round: How many are selected each round.
        """

    def begin_round(self, round_num: int, weights: StateDict) -> None:
        """Called when round ``round_num`` starts, with the current global weights (those shared, not local)."""

    def client_algorithms(self) -> list[ClientAlgorithm]:
        """The client algorithms every client fit runs, in order; none by default.

        Called once, when the federation is built; the objects go to every worker (pickled under
        Ray, built again from the config on a Flower SuperNode).
        """
        return []

    def configure_fit(self, client_id: int, round_num: int) -> dict[str, Any]:
        """The payload of client ``client_id``'s fit in ``round_num``, by client-algorithm name; none by default.

        Called for each selected client, in order, after :meth:`begin_round`: tensors (on the CPU)
        and primitives. The tasks of a round share the global weights; what differs per client
        goes here.
        """
        return {}

    def configure_evaluate(self, client_id: int, round_num: int) -> dict[str, Any]:
        """The payload of client ``client_id``'s evaluation in ``round_num``; none by default."""
        return {}

    def accumulate(self, update: ClientUpdate) -> None:
        """Fold one successful client update in (``update.payload`` holds its algorithms' replies).

        ``update.weights`` may be freed afterwards.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement `accumulate(update)`")

    def finish_round(self) -> dict[str, torch.Tensor]:
        """Return the new global weights from the updates folded in this round."""
        raise NotImplementedError(f"{type(self).__name__} must implement `finish_round()`")

    def round_metrics(self) -> dict[str, float]:
        """Metrics of the round just aggregated, for the round's metrics (after :meth:`finish_round`); none by default.

        The DP wrappers put their account here (``privacy/epsilon``).
        """
        return {}

    def state_dict(self) -> dict[str, Any]:
        """The state to checkpoint between rounds: tensors and primitives, empty when stateless."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state returned by :meth:`state_dict`."""
