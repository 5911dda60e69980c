"""The base of the adaptive server optimizers FedAdam, FedYogi and FedAdagrad."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from callbacks.arguments import check_number
from federated.strategies.server_opt import SecondMoment, adaptive_step
from federated.strategies.server_step import ServerStep, clone_state, load_moments

if TYPE_CHECKING:
    from federated.messages import StateDict

__all__ = ["FedOpt"]


class FedOpt(ServerStep):
    """An adaptive server optimizer on the pseudo-gradient ``delta = mean - w_global`` (Reddi et al., 2021).

    The round's updates are averaged by samples as :class:`~federated.FedAvg` does (streaming);
    then, for each floating tensor::

        m = beta_1 * m + (1 - beta_1) * delta
        v = the subclass's rule (Adam, Yogi, Adagrad)
        w_global = w_global + eta * m / (sqrt(v) + tau)

    Other tensors (BatchNorm's ``num_batches_tracked``) take the FedAvg value. The moments ``m``
    and ``v`` start at zero, without bias correction (the paper's Algorithm 2; Flower's FedAdam
    also scales ``eta`` by Adam's bias correction), and they are the strategy's state: saved in the
    federation checkpoint, so a resumed run takes the same steps. The client learning rate
    (``eta_l``) is the client's own optimizer's. Subclasses set ``rule``;
    :func:`federated.strategies.server_opt.adaptive_step` does the maths.

    Args:
        eta: The server learning rate, ``> 0``.
        beta_1: The first-moment decay, in ``[0, 1)``.
        beta_2: The second-moment decay, in ``[0, 1)`` (Adagrad's rule does not use it).
        tau: The adaptivity constant, ``> 0``: the smaller, the more adaptive.

        local_keys: State-dict names (glob patterns) never aggregated; see :class:`~federated.Strategy`.
            Defaults to none.
    Raises:
        ValueError: An argument out of its range.
    """

    rule: ClassVar[SecondMoment]

    def __init__(self, *, eta: float, beta_1: float, beta_2: float, tau: float, local_keys: Sequence[str] = ()) -> None:
        super().__init__(local_keys=local_keys)
        self.eta = float(check_number("eta", eta, low=0.0, low_open=True))
        self.beta_1 = float(check_number("beta_1", beta_1, low=0.0, high=1.0, high_open=True))
        self.beta_2 = float(check_number("beta_2", beta_2, low=0.0, high=1.0, high_open=True))
        self.tau = float(check_number("tau", tau, low=0.0, low_open=True, hint="it keeps sqrt(v) + tau away from 0"))
        self.m: dict[str, torch.Tensor] | None = None
        self.v: dict[str, torch.Tensor] | None = None

    def server_step(self, global_weights: StateDict, mean: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        weights, self.m, self.v = adaptive_step(
            global_weights, mean, self.m, self.v,
            rule=self.rule, eta=self.eta, beta_1=self.beta_1, beta_2=self.beta_2, tau=self.tau,
        )  # fmt: skip
        return weights

    def state_dict(self) -> dict[str, Any]:
        return {"m": clone_state(self.m), "v": clone_state(self.v)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.m = load_moments(state_dict, "m")
        self.v = load_moments(state_dict, "v")
