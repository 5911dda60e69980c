"""FedNova: every client's change normalised by its number of local steps before it is averaged."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from callbacks import register
from callbacks.arguments import check_number
from federated.client.step_count import StepCount
from federated.strategies.server_step import ServerStep

if TYPE_CHECKING:
    from federated.client.algorithm import ClientAlgorithm
    from federated.messages import ClientUpdate, StateDict

__all__ = ["FedNova"]


@register("strategy.fednova")
class FedNova(ServerStep):
    """FedNova (Wang et al., 2020): clients that take more local steps do not pull the model further.

    Each client's fit counts its optimizer steps ``tau_i`` (:class:`~federated.client.StepCount`).
    With ``a_i = tau_i`` for plain SGD, or ``(tau_i - rho (1 - rho^tau_i) / (1 - rho)) / (1 - rho)``
    for SGD with momentum ``rho`` (the paper's ``||a_i||_1``), and ``p_i`` the clients' sample
    shares in the round::

        d_i = (x - y_i) / a_i                  each client's normalised change
        x = x - tau_eff * sum_i p_i d_i        with tau_eff = sum_i p_i a_i

    for floating tensors; others take FedAvg's mean. With equal steps everywhere this is FedAvg.
    Updates are folded in as they arrive, as FedAvg's.

    Args:
        momentum: The momentum ``rho`` of the clients' SGD, in ``[0, 1)``. Defaults to ``0.0``.
        weighted: Weight the clients by their samples (``p_i``); ``False`` gives each the same share.
            Defaults to ``True``.
        local_keys: State-dict names (glob patterns) never aggregated; see :class:`~federated.Strategy`.
            Defaults to none.

    Raises:
        ValueError: ``momentum`` out of range.

    Example:
        >>> from federated.messages import ClientUpdate
        >>> fednova = FedNova()
        >>> fednova.begin_round(1, {"w": torch.zeros(1)})
        >>> for i, (w, steps) in enumerate([(-1.0, 1), (-4.0, 4)]):  # both moved -1 per step
        ...     payload = {"fednova": {"steps": steps}}
        ...     fednova.accumulate(ClientUpdate(i, 10, {"w": torch.tensor([w])}, payload=payload))
        >>> fednova.finish_round()  # tau_eff = 2.5, d = 1: FedAvg would give -2.5 too, x - 2.5 * 1
        {'w': tensor([-2.5000])}
    """

    def __init__(self, *, momentum: float = 0.0, weighted: bool = True, local_keys: Sequence[str] = ()) -> None:
        super().__init__(weighted=weighted, local_keys=local_keys)
        self.momentum = float(check_number("momentum", momentum, low=0.0, high=1.0, high_open=True))
        self._tau_sum = 0.0
        self._share_sum = 0.0

    def client_algorithms(self) -> list[ClientAlgorithm]:
        return [StepCount()]

    def begin_round(self, round_num: int, weights: StateDict) -> None:
        super().begin_round(round_num, weights)
        self._tau_sum = self._share_sum = 0.0

    def normaliser(self, steps: int) -> float:
        """``||a_i||_1`` of a client that took ``steps`` optimizer steps."""
        rho = self.momentum
        if rho == 0:
            return float(steps)
        return (steps - rho * (1 - rho**steps) / (1 - rho)) / (1 - rho)

    def accumulate(self, update: ClientUpdate) -> None:
        steps = update.payload.get(StepCount.name, {}).get("steps")
        if not isinstance(steps, int) or steps < 1 or update.weights is None:
            raise ValueError(
                f"the update of client {update.client_id} needs weights and a step count >= 1 under "
                f"`fednova.steps` in its payload, got {steps!r}: FedNova's clients must run its StepCount"
            )
        if self._global is None:
            raise ValueError("FedNova needs `begin_round(round_num, weights)` before `accumulate(update)`")
        a = self.normaliser(steps)
        normalised = {
            name: (self._global[name] - y) / a if y.is_floating_point() else y for name, y in update.weights.items()
        }
        share = update.num_samples if self.weighted else 1
        self._tau_sum += share * a
        self._share_sum += share
        super().accumulate(dataclasses.replace(update, weights=normalised))

    def server_step(self, global_weights: StateDict, mean: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        tau_eff = self._tau_sum / self._share_sum
        return {
            name: global_weights[name] - tau_eff * d if d.is_floating_point() else d for name, d in mean.items()
        }
