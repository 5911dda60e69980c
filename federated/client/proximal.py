"""FedProx's client half: ``mu * (w - w_start)`` added to the gradients before each optimizer step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from federated.client.algorithm import ClientAlgorithm
from federated.client.grads import grad_scale_pending, stepped

if TYPE_CHECKING:
    from lightning.pytorch import LightningModule, Trainer

__all__ = ["ProximalTerm"]


class ProximalTerm(ClientAlgorithm):
    """Keeps a client near the weights its fit started from (Li et al., 2020): ``mu/2 ||w - w_start||^2``.

    In ``on_before_optimizer_step`` it adds ``mu * (w - w_start)`` to the gradient of each trainable
    parameter of the optimizer about to step, with ``w_start`` its value when the fit started (the
    global weights; the client's own, for its ``local_keys``), copied on the module's device at
    ``on_fit_start`` and dropped at ``teardown``. The model's loss is left alone. Under mixed
    precision the gradients are unscaled at that point (16-mixed's GradScaler unscales before the
    hook; for an optimizer that unscales inside its own ``step`` the term is scaled to match), and
    the term comes before gradient clipping, as a part of the gradient. It sends and keeps nothing.

    Args:
        mu: The proximal coefficient.

    Example:
        >>> term = ProximalTerm(mu=0.1)
        >>> term.name, term.mu
        ('fedprox', 0.1)
    """

    name = "fedprox"

    def __init__(self, mu: float) -> None:
        self.mu = float(mu)
        self._anchors: dict[int, torch.Tensor] = {}

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._anchors = {id(p): p.detach().clone() for p in pl_module.parameters() if p.requires_grad}

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        scale = grad_scale_pending(trainer, optimizer)
        with torch.no_grad():
            for _, param, grad in stepped(optimizer):
                anchor = self._anchors.get(id(param))
                if anchor is None:
                    continue
                term = param.detach() - anchor
                if scale is not None:
                    term = term * scale.to(term.dtype)
                grad.add_(term, alpha=self.mu)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._anchors = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_anchors": {}}  # device tensors keyed by id(): meaningless elsewhere
