"""SCAFFOLD: FedAvg's round with control variates that correct each client's drift."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from callbacks import register
from callbacks.arguments import check_number
from federated.client.scaffold import ControlVariate
from federated.strategies.aggregate import WeightedSum, accumulate, init_sum
from federated.strategies.server_step import ServerStep, clone_state, load_moments

if TYPE_CHECKING:
    from federated.client.algorithm import ClientAlgorithm
    from federated.messages import ClientUpdate, StateDict

__all__ = ["Scaffold"]


@register("strategy.scaffold")
class Scaffold(ServerStep):
    """SCAFFOLD (Karimireddy et al., 2020): local steps corrected by ``c - c_i``, with option II's variates.

    Each client fit gets the server's control variate ``c`` in its payload; its client algorithm
    (:class:`~federated.client.ControlVariate`) adds ``c - c_i`` to every gradient, keeps the
    client's own ``c_i`` between its fits (in the federation checkpoint on the sequential and Ray
    backends; on the SuperNode that runs it under Flower) and replies with ``delta_c = c_i+ - c_i``.
    With ``S`` the round's updates and ``N`` the federation's clients::

        x = x + eta_g * (mean_S(y_i) - x)          floating tensors; others take the mean
        c = c + sum_S(delta_c_i) / N

    ``c`` starts at zero and is the strategy's state. The mean of the weights is FedAvg's, by
    samples; ``weighted=False`` gives every client the same share, as the paper's ``mean_S`` does.
    The variates' sum is unweighted. With ``eta_g=1`` the weights step as FedAvg's would from the
    same updates.

    Args:
        eta_g: The server learning rate, ``> 0``. Defaults to ``1.0``.
        weighted: Weight the mean of the clients' weights by their samples. Defaults to ``True``.
        local_keys: State-dict names (glob patterns) never aggregated; their parameters are not
            corrected. Defaults to none.

    Raises:
        ValueError: ``eta_g`` not a positive number.

    Example:
        >>> from federated.messages import ClientUpdate
        >>> scaffold = Scaffold(eta_g=1.0)
        >>> scaffold.begin_federation(num_clients=4, clients_per_round=2)
        >>> scaffold.begin_round(1, {"w": torch.zeros(1)})
        >>> scaffold.configure_fit(0, 1)["scaffold"]["c"]
        {}
        >>> for i, (w, dc) in enumerate([(1.0, 2.0), (3.0, 6.0)]):
        ...     payload = {"scaffold": {"delta_c": {"w": torch.tensor([dc])}}}
        ...     scaffold.accumulate(ClientUpdate(i, 10, {"w": torch.tensor([w])}, payload=payload))
        >>> scaffold.finish_round(), scaffold.c  # c = (2 + 6) / 4
        ({'w': tensor([2.])}, {'w': tensor([2.])})
    """

    def __init__(self, *, eta_g: float = 1.0, weighted: bool = True, local_keys: Sequence[str] = ()) -> None:
        super().__init__(weighted=weighted, local_keys=local_keys)
        self.eta_g = float(check_number("eta_g", eta_g, low=0.0, low_open=True))
        self.c: dict[str, torch.Tensor] = {}
        self.num_clients: int | None = None
        self._deltas: WeightedSum | None = None

    def begin_federation(self, num_clients: int, clients_per_round: int) -> None:
        self.num_clients = num_clients

    def client_algorithms(self) -> list[ClientAlgorithm]:
        return [ControlVariate()]

    def begin_round(self, round_num: int, weights: StateDict) -> None:
        super().begin_round(round_num, weights)
        self._deltas = None

    def configure_fit(self, client_id: int, round_num: int) -> dict[str, Any]:
        return {ControlVariate.name: {"c": self.c, "local_keys": list(self.local_keys)}}

    def accumulate(self, update: ClientUpdate) -> None:
        delta = update.payload.get(ControlVariate.name, {}).get("delta_c")
        if not isinstance(delta, dict):
            raise ValueError(
                f"the update of client {update.client_id} has no `scaffold.delta_c` in its payload: "
                "SCAFFOLD's clients must run its ControlVariate"
            )
        delta = {name: t for name, t in delta.items() if not self.is_local(name)}
        if self._deltas is None:
            self._deltas = init_sum(delta)
        accumulate(self._deltas, delta, 1)
        super().accumulate(update)

    def finish_round(self) -> dict[str, torch.Tensor]:
        if self.num_clients is None:
            raise ValueError("Scaffold needs the federation's size: call begin_federation(num_clients, ...) first")
        weights = super().finish_round()
        if self._deltas is not None:
            for name, total in self._deltas.sums.items():
                step = (total / self.num_clients).to(self._deltas.dtypes[name])
                self.c[name] = self.c[name] + step if name in self.c else step
        self._deltas = None
        return weights

    def server_step(self, global_weights: StateDict, mean: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            name: global_weights[name] + self.eta_g * (m - global_weights[name]) if m.is_floating_point() else m
            for name, m in mean.items()
        }

    def state_dict(self) -> dict[str, Any]:
        return {"c": clone_state(self.c)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.c = load_moments(state_dict, "c") or {}
