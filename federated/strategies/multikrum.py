"""MultiKrum: the mean of the client updates nearest to their neighbours, attackers' outliers left out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from callbacks import register
from callbacks.arguments import check_number
from federated.strategies.buffered import BufferedStrategy
from federated.strategies.robust import multi_krum

if TYPE_CHECKING:
    import torch

    from federated.messages import StateDict

__all__ = ["MultiKrum"]


@register("strategy.multikrum")
class MultiKrum(BufferedStrategy):
    """Multi-Krum (Blanchard et al., 2017): the mean of the ``num_nodes_to_select`` updates of lowest Krum score.

    An update's Krum score is the sum of its squared L2 distances (over all floating tensors) to its
    ``n - f - 2`` nearest other updates of the round, ``n`` being the updates received and ``f``
    ``num_malicious_nodes``; attackers far from the honest clients score high and are left out.
    ``num_nodes_to_select=1`` is Krum. Needs ``n >= 2f + 3`` and ``n >= num_nodes_to_select``:
    the federation refuses fewer clients per round, and a round that failures leave with fewer
    updates fails with a ``ValueError`` saying how many arrived.

    The arguments and their defaults are Flower 1.41's (``flwr.serverapp.strategy.MultiKrum``).
    Unlike Flower, the selected updates are averaged unweighted, as in the paper (a client cannot
    buy influence by claiming many samples; Flower weights them by their ``num-examples``), and a
    round with fewer than ``2f + 3`` updates fails instead of being scored with one nearest
    neighbour. Integer tensors (``num_batches_tracked``) take the rounded mean of the selected.

    It needs all updates: ``accumulate`` keeps every client's weights until ``finish_round``, so a
    round holds K copies of the model in memory, and the distances a K x K matrix.

    Args:
        num_malicious_nodes: ``f``, the number of attackers tolerated, an int ``>= 0``. Defaults to ``0``.
        num_nodes_to_select: ``m``, how many updates are averaged, an int ``>= 1``. Defaults to ``1``.
        local_keys: State-dict names (glob patterns) never aggregated; see :class:`~federated.Strategy`.
            Defaults to none.

    Raises:
        ArgumentError: An argument that is not an int in its range.

    Example:
        >>> import torch
        >>> from federated.messages import ClientUpdate
        >>> multikrum = MultiKrum(num_malicious_nodes=1, num_nodes_to_select=3)
        >>> multikrum.begin_round(1, {"w": torch.zeros(1)})
        >>> for i, value in enumerate([1.0, 2.0, 3.0, 4.0, 100.0]):  # client 4 attacks
        ...     update = ClientUpdate(client_id=i, num_samples=10, weights={"w": torch.tensor([value])})
        ...     multikrum.accumulate(update)
        >>> multikrum.finish_round()  # scores 5, 2, 2, 5, 18625: clients 1, 2, then 0 (tied with 3, earlier)
        {'w': tensor([2.])}
    """

    def __init__(
        self, *, num_malicious_nodes: int = 0, num_nodes_to_select: int = 1, local_keys: Sequence[str] = ()
    ) -> None:
        super().__init__(local_keys=local_keys)
        self.num_malicious_nodes: int = check_number(
            "num_malicious_nodes", num_malicious_nodes, low=0, integer=True, hint="it is the attackers tolerated"
        )
        self.num_nodes_to_select: int = check_number(
            "num_nodes_to_select", num_nodes_to_select, low=1, integer=True, hint="it is the updates averaged"
        )

    def unmet_requirement(self, num_updates: int) -> tuple[str, int, str] | None:
        if num_updates < 2 * self.num_malicious_nodes + 3:
            return "num_malicious_nodes", 2 * self.num_malicious_nodes + 3, "n >= 2f + 3"
        if num_updates < self.num_nodes_to_select:
            return "num_nodes_to_select", self.num_nodes_to_select, "n >= num_nodes_to_select"
        return None

    def aggregate(self, states: list[StateDict]) -> dict[str, torch.Tensor]:
        return multi_krum(states, self.num_malicious_nodes, self.num_nodes_to_select)
