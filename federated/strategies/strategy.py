"""The aggregation strategy interface: begin a round, fold in updates one by one, finish."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from callbacks import ArgumentError

if TYPE_CHECKING:
    from lightning.pytorch.callbacks import Callback as LightningCallback

    from federated.results import ClientUpdate, StateDict

__all__ = ["Strategy"]


class Strategy:
    """Base of aggregation strategies. The round loop calls, for each round::

        strategy.begin_round(round_num, global_weights)
        strategy.accumulate(update)          # once per successful client, as it arrives
        new_weights = strategy.finish_round()

    Updates are handed over one at a time so that a strategy can keep a running sum instead of
    every update (see :class:`~federated.FedAvg`). The maths lives in pure functions
    (:mod:`federated.strategies.aggregate`); a strategy only coordinates them. Room for more: FedAdam keeps the
    weights given to ``begin_round``, applies a server optimizer to ``mean - weights`` in
    ``finish_round`` and returns its moments from :meth:`state_dict`; FedProx adds the proximal
    term on the client side and aggregates as FedAvg.

    A strategy that changes how clients train returns Lightning callbacks from
    :meth:`client_callbacks`: the round loop adds them to every client fit of the round (FedProx's
    proximal term is one, hooked on ``on_before_optimizer_step``).

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

    def begin_round(self, round_num: int, weights: StateDict) -> None:
        """Called when round ``round_num`` starts, with the current global weights (those shared, not local)."""

    def client_callbacks(self, weights: StateDict) -> list[LightningCallback]:
        """Lightning callbacks to add to each client fit of the round that starts from ``weights``; none by default.

        Called once per round, after :meth:`begin_round`. The same objects serve every client fit of
        the round, one fit after the other (or a pickled copy each, in another process): they take
        what a fit needs in their ``on_fit_start`` and must not carry anything from one fit to the
        next. ``weights`` are the global weights on the CPU; each client's module starts from them.
        """
        return []

    def accumulate(self, update: ClientUpdate) -> None:
        """Fold one successful client update in; ``update.weights`` may be freed afterwards."""
        raise NotImplementedError(f"{type(self).__name__} must implement `accumulate(update)`")

    def finish_round(self) -> dict[str, torch.Tensor]:
        """Return the new global weights from the updates folded in this round."""
        raise NotImplementedError(f"{type(self).__name__} must implement `finish_round()`")

    def state_dict(self) -> dict[str, Any]:
        """The state to checkpoint between rounds: tensors and primitives, empty when stateless."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state returned by :meth:`state_dict`."""
