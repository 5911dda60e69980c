"""Federated Averaging with a streaming, sample-weighted running sum."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import torch

from callbacks import register
from federated.strategies.aggregate import WeightedSum, accumulate, finalize, init_sum
from federated.strategies.strategy import Strategy

if TYPE_CHECKING:
    from federated.messages import ClientUpdate, StateDict

__all__ = ["FedAvg"]

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


@register("strategy.fedavg")
class FedAvg(Strategy):
    """FedAvg (McMahan et al., 2017): the new global weights are the clients' weights averaged by samples.

    Each update is added into a running sum as soon as it arrives, so aggregation holds the
    accumulator and one update whatever the number of clients (Flower and NVFlare hold all K).
    Integer buffers (BatchNorm's ``num_batches_tracked``) get the rounded weighted mean; every
    tensor keeps its dtype.

    Args:
        weighted: Weight each client by its number of samples; ``False`` gives every client the
            same weight. Defaults to ``True``.
        accumulate_dtype: The dtype of the running sum, ``"float64"`` or ``"float32"`` (half the
            memory, less exact). Defaults to ``"float64"``.

        local_keys: State-dict names (glob patterns) never aggregated; see :class:`~federated.Strategy`.
            Defaults to none.
    Raises:
        ValueError: Unknown ``accumulate_dtype``.

    Example:
        >>> from federated.messages import ClientUpdate
        >>> fedavg = FedAvg()
        >>> fedavg.begin_round(1, {"w": torch.zeros(1)})
        >>> fedavg.accumulate(ClientUpdate(client_id=0, num_samples=1, weights={"w": torch.tensor([1.0])}))
        >>> fedavg.accumulate(ClientUpdate(client_id=1, num_samples=3, weights={"w": torch.tensor([5.0])}))
        >>> fedavg.finish_round()
        {'w': tensor([4.])}
    """

    def __init__(
        self,
        *,
        weighted: bool = True,
        accumulate_dtype: Literal["float64", "float32"] = "float64",
        local_keys: Sequence[str] = (),
    ) -> None:
        super().__init__(local_keys=local_keys)
        if accumulate_dtype not in _DTYPES:
            raise ValueError(f"`accumulate_dtype` can be 'float64' or 'float32', got {accumulate_dtype!r}")
        self.weighted = weighted
        self.accumulate_dtype = accumulate_dtype
        self._template: StateDict | None = None
        self._sum: WeightedSum | None = None

    def begin_round(self, round_num: int, weights: StateDict) -> None:
        self._template = weights
        self._sum = None

    def accumulate(self, update: ClientUpdate) -> None:
        if update.weights is None:
            raise ValueError(f"the update of client {update.client_id} has no weights (already folded in?)")
        if self._sum is None:
            template = self._template if self._template is not None else update.weights
            self._sum = init_sum(template, _DTYPES[self.accumulate_dtype])
        accumulate(self._sum, update.weights, update.num_samples if self.weighted else 1)

    def finish_round(self) -> dict[str, torch.Tensor]:
        if self._sum is None:
            raise ValueError("FedAvg cannot finish a round without updates")
        weights, self._sum, self._template = finalize(self._sum), None, None
        return weights
