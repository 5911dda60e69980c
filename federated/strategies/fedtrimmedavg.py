"""FedTrimmedAvg: the coordinate-wise mean of the clients' weights without the extremes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from callbacks import register
from callbacks.arguments import check_number
from federated.strategies.aggregate import trimmed_mean
from federated.strategies.buffered import BufferedStrategy

if TYPE_CHECKING:
    import torch

    from federated.messages import StateDict

__all__ = ["FedTrimmedAvg"]


@register("strategy.fedtrimmedavg")
class FedTrimmedAvg(BufferedStrategy):
    """FedTrimmedAvg (Yin et al., 2018): per coordinate, the mean of the clients' values without the extremes.

    The ``int(beta * K)`` lowest and the as many highest values of each coordinate are dropped.

    Robust to up to ``int(beta * K)`` outlying updates at each end. Unweighted: every client
    counts once. ``beta=0`` is the plain (unweighted) mean.

    It needs all updates: ``accumulate`` keeps every client's weights until ``finish_round``, so a
    round holds K copies of the model in memory (FedAvg holds one running sum).

    Args:
        beta: The fraction cut at each end, in ``[0, 0.5)``. Defaults to ``0.2`` (Flower's).

        local_keys: State-dict names (glob patterns) never aggregated; see :class:`~federated.Strategy`.
            Defaults to none.
    Raises:
        ValueError: ``beta`` out of range.

    Example:
        >>> import torch
        >>> from federated.messages import ClientUpdate
        >>> fedtrimmedavg = FedTrimmedAvg(beta=0.25)
        >>> fedtrimmedavg.begin_round(1, {"w": torch.zeros(1)})
        >>> for i, value in enumerate([-50.0, 1.0, 2.0, 100.0]):
        ...     update = ClientUpdate(client_id=i, num_samples=10, weights={"w": torch.tensor([value])})
        ...     fedtrimmedavg.accumulate(update)
        >>> fedtrimmedavg.finish_round()
        {'w': tensor([1.5000])}
    """

    def __init__(self, *, beta: float = 0.2, local_keys: Sequence[str] = ()) -> None:
        super().__init__(local_keys=local_keys)
        self.beta = float(
            check_number("beta", beta, low=0.0, high=0.5, high_open=True, hint="it is the fraction cut at each end")
        )

    def aggregate(self, states: list[StateDict]) -> dict[str, torch.Tensor]:
        return trimmed_mean(states, self.beta)
