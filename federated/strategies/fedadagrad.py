"""FedAdagrad: Adagrad on the server, over the clients' averaged change."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from callbacks import register
from federated.strategies.fedopt import FedOpt
from federated.strategies.server_opt import SecondMoment

__all__ = ["FedAdagrad"]


@register("strategy.fedadagrad")
class FedAdagrad(FedOpt):
    """FedAdagrad (Reddi et al., 2021): the server steps with Adagrad on ``delta = mean - w_global``.

    ``v = v + delta**2``: the step of each coordinate shrinks with the sum of its squared changes.
    The rest as :class:`~federated.FedOpt`; ``beta_1 = 0`` (the default, as Flower's) uses the
    round's ``delta`` itself instead of a momentum. Defaults are Flower 1.41's
    (``flwr.serverapp.strategy``; the legacy ``flwr.server.strategy`` had ``tau=1e-9``).

    Args:
        eta: The server learning rate, ``> 0``. Defaults to ``0.1``.
        beta_1: The first-moment decay, in ``[0, 1)``. Defaults to ``0.0``.
        tau: The adaptivity constant, ``> 0``. Defaults to ``1e-3``.

        local_keys: State-dict names (glob patterns) never aggregated; see :class:`~federated.Strategy`.
            Defaults to none.
    Raises:
        ValueError: An argument out of its range.

    Example:
        >>> import torch
        >>> from federated.messages import ClientUpdate
        >>> fedadagrad = FedAdagrad(eta=0.1, tau=1.0)
        >>> fedadagrad.begin_round(1, {"w": torch.tensor([1.0])})
        >>> fedadagrad.accumulate(ClientUpdate(client_id=0, num_samples=1, weights={"w": torch.tensor([4.0])}))
        >>> fedadagrad.finish_round()  # delta 3, m 3, v 9: 1 + 0.1 * 3 / (3 + 1)
        {'w': tensor([1.0750])}
    """

    rule: ClassVar[SecondMoment] = "adagrad"

    def __init__(
        self, *, eta: float = 1e-1, beta_1: float = 0.0, tau: float = 1e-3, local_keys: Sequence[str] = ()
    ) -> None:
        super().__init__(eta=eta, beta_1=beta_1, beta_2=0.0, tau=tau, local_keys=local_keys)
