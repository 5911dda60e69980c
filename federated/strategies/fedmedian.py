"""FedMedian: the coordinate-wise median of the clients' weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from callbacks import register
from federated.strategies.aggregate import median
from federated.strategies.buffered import BufferedStrategy

if TYPE_CHECKING:
    import torch

    from federated.messages import StateDict

__all__ = ["FedMedian"]


@register("strategy.fedmedian")
class FedMedian(BufferedStrategy):
    """FedMedian (Yin et al., 2018): each coordinate of the new global weights is the clients' median.

    Robust to a minority of outlying or corrupted updates. Unweighted: every client counts once,
    whatever its number of samples. With an even number of clients, the mean of the two middle
    values (as NumPy's and Flower's median).

    It needs all updates: ``accumulate`` keeps every client's weights until ``finish_round``, so a
    round holds K copies of the model in memory (FedAvg holds one running sum).


    Args:
        local_keys: State-dict names (glob patterns) never aggregated; see :class:`~federated.Strategy`.
            Defaults to none.
    Example:
        >>> import torch
        >>> from federated.messages import ClientUpdate
        >>> fedmedian = FedMedian()
        >>> fedmedian.begin_round(1, {"w": torch.zeros(1)})
        >>> for i, value in enumerate([1.0, 100.0, 2.0]):
        ...     update = ClientUpdate(client_id=i, num_samples=10, weights={"w": torch.tensor([value])})
        ...     fedmedian.accumulate(update)
        >>> fedmedian.finish_round()
        {'w': tensor([2.])}
    """

    def __init__(self, *, local_keys: Sequence[str] = ()) -> None:
        super().__init__(local_keys=local_keys)

    def aggregate(self, states: list[StateDict]) -> dict[str, torch.Tensor]:
        return median(states)
