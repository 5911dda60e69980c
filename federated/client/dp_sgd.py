"""Record-level DP-SGD in every client fit, each client with its own privacy account."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from federated.client.algorithm import ClientAlgorithm
from lightning_bridge.dp_sgd import DPSGD, check_private_model

if TYPE_CHECKING:
    from lightning.pytorch import LightningModule

    from federated.messages import StateDict

__all__ = ["PrivateTraining"]


class PrivateTraining(DPSGD, ClientAlgorithm):
    """Each client trains with DP-SGD (:class:`~lightning_bridge.DPSGD`: Opacus's clipping, noise and Poisson sampling).

    Every client keeps its own RDP account, the algorithm's kept state for it (``history``, its
    ``(noise_multiplier, sample_rate, steps)`` runs): it goes on from one of the client's fits to
    its next, is saved in the federation checkpoint with the client and restored on resume (under
    Ray in the driver, under Flower in the SuperNode's node state). Each update's metrics carry the
    client's ``dp/epsilon`` and ``dp/epsilon_next`` (at the end of its fit's last epoch); a round's
    metrics carry the largest of them, the worst-off client's. The noise and the Poisson draws come
    from the generators the task's seed sets, so a resumed federation trains exactly as one that
    ran on. The reply to the strategy is empty.

    It cannot run with SCAFFOLD's or FedProx's client half: they correct the gradient before the
    optimizer step, which DP-SGD's clipped, noised gradient then replaces.

    Args:
        noise_multiplier: The noise's standard deviation over ``max_grad_norm``, ``>= 0``.
        max_grad_norm: The L2 norm each sample's gradient is clipped to, ``> 0``.
        delta: The delta each client's epsilon is reported at, in ``(0, 1)``.
        poisson_sampling: Draw each batch by Poisson sampling. Defaults to ``True``.

    Raises:
        ArgumentError: An argument out of range; when the federation is built, a model Opacus
            cannot train (BatchNorm: use GroupNorm), naming its layer.

    Example:
        >>> algorithm = PrivateTraining(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5)
        >>> algorithm.begin({}, {}, {"history": [[1.0, 0.1, 20]]})
        >>> algorithm.name, algorithm.steps, algorithm.end(None)
        ('dp_sgd', 20, ({}, {'history': [[1.0, 0.1, 20]]}))
    """

    name = "dp_sgd"
    conflicts = ("scaffold", "fedprox")

    def begin(self, weights: StateDict, payload: Mapping[str, Any], state: Mapping[str, Any]) -> None:
        self.load_state_dict(dict(state))  # this client's account; an empty one before its first fit

    def check_model(self, model: LightningModule) -> None:
        check_private_model(model)

    def end(self, module: LightningModule) -> tuple[dict[str, Any], dict[str, Any]]:
        return {}, self.state_dict()
