"""FedAdam: Adam on the server, over the clients' averaged change."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from callbacks import register
from federated.strategies.fedopt import FedOpt
from federated.strategies.server_opt import SecondMoment

__all__ = ["FedAdam"]


@register("strategy.fedadam")
class FedAdam(FedOpt):
    """FedAdam (Reddi et al., 2021): the server steps with Adam on ``delta = mean - w_global``.

    ``v = beta_2 * v + (1 - beta_2) * delta**2``; the rest as :class:`~federated.FedOpt`.
    Defaults are Flower 1.41's (``flwr.serverapp.strategy``; the legacy ``flwr.server.strategy`` had ``tau=1e-9``).

    Args:
        eta: The server learning rate, ``> 0``. Defaults to ``0.1``.
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
        >>> fedadam = FedAdam(eta=0.1, beta_1=0.5, beta_2=0.75, tau=1.0)
        >>> fedadam.begin_round(1, {"w": torch.tensor([1.0])})
        >>> fedadam.accumulate(ClientUpdate(client_id=0, num_samples=1, weights={"w": torch.tensor([3.0])}))
        >>> fedadam.finish_round()  # delta 2, m 1, v 1: 1 + 0.1 * 1 / (1 + 1)
        {'w': tensor([1.0500])}
    """

    rule: ClassVar[SecondMoment] = "adam"

    def __init__(
        self,
        *,
        eta: float = 1e-1,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        tau: float = 1e-3,
        local_keys: Sequence[str] = (),
    ) -> None:
        super().__init__(eta=eta, beta_1=beta_1, beta_2=beta_2, tau=tau, local_keys=local_keys)
