"""Bulyan: Krum picks the plausible updates, then a coordinate-wise trimmed mean around their median."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from callbacks import register
from callbacks.arguments import check_number
from federated.strategies.buffered import BufferedStrategy
from federated.strategies.robust import bulyan

if TYPE_CHECKING:
    import torch

    from federated.messages import StateDict

__all__ = ["Bulyan"]


@register("strategy.bulyan")
class Bulyan(BufferedStrategy):
    """Bulyan (El Mhamdi et al., 2018): Krum selection, then per coordinate a mean around the median.

    With ``n`` updates and ``f = num_malicious_nodes``: Krum is applied ``theta = n - 2f`` times,
    each time to the updates not picked yet, its pick removed; then each coordinate of the new
    weights is the mean of the ``beta = theta - 2f`` values of the picked updates closest to
    their median. An attacker must stay close to the honest updates in distance (Krum) and in
    every coordinate (the trimmed mean). Needs ``n >= 4f + 3``: the federation refuses fewer
    clients per round, and a round that failures leave with fewer updates fails with a
    ``ValueError`` saying how many arrived. Unweighted; integer tensors (``num_batches_tracked``)
    take the rounded mean of the picked updates.

    The argument and its default are Flower 1.41's (``flwr.serverapp.strategy.Bulyan``). Unlike
    Flower 1.41, whose selection keeps the ``theta`` updates of lowest Krum score over all ``n``
    in one pass, the selection is the paper's (and Flower's legacy ``aggregate_bulyan``'s):
    Krum again on what remains after each pick. Flower skips a round with too few updates
    (the model stays as it was); here the round fails. No ``selection_rule``: Krum is the only one.

    It needs all updates: ``accumulate`` keeps every client's weights until ``finish_round``, so a
    round holds K copies of the model in memory.

    Args:
        num_malicious_nodes: ``f``, the number of attackers tolerated, an int ``>= 0``. Defaults to ``0``.
        local_keys: State-dict names (glob patterns) never aggregated; see :class:`~federated.Strategy`.
            Defaults to none.

    Raises:
        ArgumentError: ``num_malicious_nodes`` is not an int ``>= 0``.

    Example:
        >>> import torch
        >>> from federated.messages import ClientUpdate
        >>> bulyan_ = Bulyan(num_malicious_nodes=1)
        >>> bulyan_.begin_round(1, {"w": torch.zeros(1)})
        >>> for i, value in enumerate([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 100.0]):  # client 6 attacks
        ...     update = ClientUpdate(client_id=i, num_samples=10, weights={"w": torch.tensor([value])})
        ...     bulyan_.accumulate(update)
        >>> bulyan_.finish_round()  # picks 1..5, then the 3 values nearest their median 3
        {'w': tensor([3.])}
    """

    def __init__(self, *, num_malicious_nodes: int = 0, local_keys: Sequence[str] = ()) -> None:
        super().__init__(local_keys=local_keys)
        self.num_malicious_nodes: int = check_number(
            "num_malicious_nodes", num_malicious_nodes, low=0, integer=True, hint="it is the attackers tolerated"
        )

    def unmet_requirement(self, num_updates: int) -> tuple[str, int, str] | None:
        if num_updates < 4 * self.num_malicious_nodes + 3:
            return "num_malicious_nodes", 4 * self.num_malicious_nodes + 3, "n >= 4f + 3"
        return None

    def aggregate(self, states: list[StateDict]) -> dict[str, torch.Tensor]:
        return bulyan(states, self.num_malicious_nodes)
