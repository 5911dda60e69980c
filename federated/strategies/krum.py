"""Krum: the one client update nearest to its neighbours, attackers' outliers left out."""

from __future__ import annotations

from collections.abc import Sequence

from callbacks import register
from federated.strategies.multikrum import MultiKrum

__all__ = ["Krum"]


@register("strategy.krum")
class Krum(MultiKrum):
    """Krum (Blanchard et al., 2017): the new global weights are the update of lowest Krum score.

    An update's Krum score is the sum of its squared L2 distances (over all floating tensors) to
    its ``n - f - 2`` nearest other updates of the round, ``n`` being the updates received and
    ``f`` ``num_malicious_nodes``. :class:`~federated.MultiKrum` with ``num_nodes_to_select=1``,
    as Flower 1.41's ``Krum``, whose argument and default it keeps. Needs ``n >= 2f + 3``: the
    federation refuses fewer clients per round, and a round that failures leave with fewer
    updates fails with a ``ValueError`` (Flower scores such a round with one nearest neighbour).

    One client's update becomes the global model: robust, but it learns from one client's data
    a round; :class:`~federated.MultiKrum` averages several. It needs all updates (K copies of
    the model in memory).

    Args:
        num_malicious_nodes: ``f``, the number of attackers tolerated, an int ``>= 0``. Defaults to ``0``.
        local_keys: State-dict names (glob patterns) never aggregated; see :class:`~federated.Strategy`.
            Defaults to none.

    Raises:
        ArgumentError: ``num_malicious_nodes`` is not an int ``>= 0``.

    Example:
        >>> import torch
        >>> from federated.messages import ClientUpdate
        >>> krum = Krum(num_malicious_nodes=1)
        >>> krum.begin_round(1, {"w": torch.zeros(1)})
        >>> for i, value in enumerate([1.0, 2.0, 3.5, 4.0, 100.0]):  # client 4 attacks
        ...     update = ClientUpdate(client_id=i, num_samples=10, weights={"w": torch.tensor([value])})
        ...     krum.accumulate(update)
        >>> krum.finish_round()  # scores 7.25, 3.25, 2.5, 4.25, 18528.25: client 2
        {'w': tensor([3.5000])}
    """

    def __init__(self, *, num_malicious_nodes: int = 0, local_keys: Sequence[str] = ()) -> None:
        super().__init__(num_malicious_nodes=num_malicious_nodes, num_nodes_to_select=1, local_keys=local_keys)
