"""FedYogi: Yogi on the server, over the clients' averaged change."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from callbacks import register
from federated.strategies.fedopt import FedOpt
from federated.strategies.server_opt import SecondMoment

__all__ = ["FedYogi"]


@register("strategy.fedyogi")
class FedYogi(FedOpt):
    """FedYogi (Reddi et al., 2021): the server steps with Yogi on ``delta = mean - w_global``.

    ``v = v - (1 - beta_2) * delta**2 * sign(v - delta**2)``: ``v`` moves towards ``delta**2`` by
    an additive step, so it grows and shrinks more slowly than Adam's. The rest as
    :class:`~federated.FedOpt`. Defaults are Flower 1.41's (``flwr.serverapp.strategy``).

    Args:
        eta: The server learning rate, ``> 0``. Defaults to ``0.01``.
        beta_1: The first-moment decay, in ``[0, 1)``. Defaults to ``0.9``.
        beta_2: The second-moment decay, in ``[0, 1)``. Defaults to ``0.99``.
        tau: The adaptivity constant, ``> 0``. Defaults to ``1e-3``.

        local_keys: State-dict names (glob patterns) never aggregated; see :class:`~federated.Strategy`.
            Defaults to none.
    Raises:
        ValueError: An argument out of its range.

    Example:
        >>> import torch
        >>> from federated.messages import ClientUpdate
        >>> fedyogi = FedYogi(eta=0.1, beta_1=0.5, beta_2=0.75, tau=1.0)
        >>> fedyogi.begin_round(1, {"w": torch.tensor([1.0])})
        >>> fedyogi.accumulate(ClientUpdate(client_id=0, num_samples=1, weights={"w": torch.tensor([3.0])}))
        >>> fedyogi.finish_round()  # delta 2, m 1, v 0 - 0.25 * 4 * sign(0 - 4) = 1: 1 + 0.1 * 1 / (1 + 1)
        {'w': tensor([1.0500])}
    """

    rule: ClassVar[SecondMoment] = "yogi"

    def __init__(
        self,
        *,
        eta: float = 1e-2,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        tau: float = 1e-3,
        local_keys: Sequence[str] = (),
    ) -> None:
        super().__init__(eta=eta, beta_1=beta_1, beta_2=beta_2, tau=tau, local_keys=local_keys)
