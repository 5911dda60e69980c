"""FedAvgM: FedAvg with server momentum."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from callbacks import register
from callbacks.arguments import check_number
from federated.strategies.server_opt import momentum_step
from federated.strategies.server_step import ServerStep, clone_state, load_moments

if TYPE_CHECKING:
    from federated.messages import StateDict

__all__ = ["FedAvgM"]


@register("strategy.fedavgm")
class FedAvgM(ServerStep):
    """FedAvgM (Hsu et al., 2019): server SGD with momentum on the pseudo-gradient ``w_global - mean``.

    The round's updates are averaged by samples as :class:`~federated.FedAvg` does; then, for each
    floating tensor, with ``g = w_global - mean``::

        b = g (first round), else server_momentum * b + g
        w_global = w_global - server_learning_rate * b

    Other tensors take the FedAvg value. The momentum buffer ``b`` is the strategy's state (in the
    federation checkpoint). With the defaults (Flower's) FedAvgM is FedAvg; the paper's runs use a
    momentum near ``0.9`` with ``server_learning_rate`` about ``1 - server_momentum``.

    Args:
        server_learning_rate: The server learning rate, ``> 0``. Defaults to ``1.0``.
        server_momentum: The momentum factor, in ``[0, 1)``. Defaults to ``0.0``.

        local_keys: State-dict names (glob patterns) never aggregated; see :class:`~federated.Strategy`.
            Defaults to none.
    Raises:
        ValueError: An argument out of its range.

    Example:
        >>> from federated.messages import ClientUpdate
        >>> fedavgm = FedAvgM(server_learning_rate=0.5, server_momentum=0.9)
        >>> fedavgm.begin_round(1, {"w": torch.tensor([1.0])})
        >>> fedavgm.accumulate(ClientUpdate(client_id=0, num_samples=1, weights={"w": torch.tensor([3.0])}))
        >>> fedavgm.finish_round()  # g = 1 - 3 = -2, b = -2: 1 - 0.5 * -2
        {'w': tensor([2.])}
    """

    def __init__(
        self, *, server_learning_rate: float = 1.0, server_momentum: float = 0.0, local_keys: Sequence[str] = ()
    ) -> None:
        super().__init__(local_keys=local_keys)
        self.server_learning_rate = float(
            check_number("server_learning_rate", server_learning_rate, low=0.0, low_open=True)
        )
        self.server_momentum = float(
            check_number("server_momentum", server_momentum, low=0.0, high=1.0, high_open=True)
        )
        self.momentum: dict[str, torch.Tensor] | None = None

    def server_step(self, global_weights: StateDict, mean: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        weights, self.momentum = momentum_step(
            global_weights,
            mean,
            self.momentum,
            server_learning_rate=self.server_learning_rate,
            server_momentum=self.server_momentum,
        )
        return weights

    def state_dict(self) -> dict[str, Any]:
        return {"momentum": clone_state(self.momentum)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.momentum = load_moments(state_dict, "momentum")
