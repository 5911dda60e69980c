"""FedProx: FedAvg aggregation, and a proximal term that keeps each client near the global weights."""

from __future__ import annotations

from collections.abc import Sequence

from callbacks import register
from callbacks.arguments import check_number
from federated.client.algorithm import ClientAlgorithm
from federated.client.proximal import ProximalTerm
from federated.strategies.fedavg import FedAvg

__all__ = ["FedProx"]


@register("strategy.fedprox")
class FedProx(FedAvg):
    """FedProx (Li et al., 2020): each client minimises ``loss + mu/2 * ||w - w_global||^2``; the server averages.

    The proximal term is applied in the client's own ``lightning.Trainer.fit`` by its client
    algorithm, :class:`~federated.client.ProximalTerm`: before each optimizer step it adds
    ``mu * (w - w_global)`` to the gradient of each trainable parameter, with ``w_global`` the
    round's global weights. The model's loss is left alone. The server side is
    :class:`~federated.FedAvg`, weighted by samples.

    Args:
        mu: The proximal coefficient, ``>= 0``; ``0`` is FedAvg. Defaults to ``0.01``.
        local_keys: State-dict names (glob patterns) never aggregated; see :class:`~federated.Strategy`.
            Defaults to none.

    Raises:
        ValueError: ``mu`` negative or not finite.

    Example:
        >>> from federated.messages import ClientUpdate
        >>> fedprox = FedProx(mu=0.1)
        >>> import torch
        >>> fedprox.begin_round(1, {"w": torch.zeros(1)})
        >>> [type(a).__name__ for a in fedprox.client_algorithms()]
        ['ProximalTerm']
        >>> fedprox.accumulate(ClientUpdate(client_id=0, num_samples=1, weights={"w": torch.tensor([2.0])}))
        >>> fedprox.finish_round()
        {'w': tensor([2.])}
    """

    def __init__(self, *, mu: float = 0.01, local_keys: Sequence[str] = ()) -> None:
        check_number("mu", mu, low=0, hint="0 is FedAvg")
        super().__init__(local_keys=local_keys)
        self.mu = float(mu)

    def client_algorithms(self) -> list[ClientAlgorithm]:
        return [ProximalTerm(self.mu)] if self.mu > 0 else []
