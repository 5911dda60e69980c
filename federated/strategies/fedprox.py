"""FedProx: FedAvg aggregation, and a proximal term that keeps each client near the global weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch.callbacks import Callback as LightningCallback

from callbacks import register
from callbacks.arguments import check_number
from federated.strategies.fedavg import FedAvg

if TYPE_CHECKING:
    from lightning.pytorch import LightningModule, Trainer

    from federated.results import StateDict

__all__ = ["FedProx"]


@register("strategy.fedprox")
class FedProx(FedAvg):
    """FedProx (Li et al., 2020): each client minimises ``loss + mu/2 * ||w - w_global||^2``; the server averages.

    The proximal term is applied in the client's own ``lightning.Trainer.fit`` by a Lightning
    callback (:meth:`client_callbacks`): in ``on_before_optimizer_step`` it adds
    ``mu * (w - w_global)`` to the gradient of each trainable parameter of the optimizer about to
    step, with ``w_global`` the round's global weights on the module's device. The model's loss
    is left alone. Under mixed precision the gradients are unscaled at that point (16-mixed's
    GradScaler unscales before the hook; for an optimizer that unscales inside its own ``step``
    the term is scaled to match), and the term comes before gradient clipping, as a part of the
    gradient. The server side is :class:`~federated.FedAvg`, weighted by samples.

    Args:
        mu: The proximal coefficient, ``>= 0``; ``0`` is FedAvg. Defaults to ``0.01``.

        local_keys: State-dict names (glob patterns) never aggregated; see :class:`~federated.Strategy`.
            Defaults to none.
    Raises:
        ValueError: ``mu`` negative or not finite.

    Example:
        >>> from federated.results import ClientUpdate
        >>> fedprox = FedProx(mu=0.1)
        >>> fedprox.begin_round(1, {"w": torch.zeros(1)})
        >>> [type(cb).__name__ for cb in fedprox.client_callbacks({"w": torch.zeros(1)})]
        ['_ProximalTerm']
        >>> fedprox.accumulate(ClientUpdate(client_id=0, num_samples=1, weights={"w": torch.tensor([2.0])}))
        >>> fedprox.finish_round()
        {'w': tensor([2.])}
    """

    def __init__(self, *, mu: float = 0.01, local_keys: Sequence[str] = ()) -> None:
        check_number("mu", mu, low=0, hint="0 is FedAvg")
        super().__init__(local_keys=local_keys)
        self.mu = float(mu)

    def client_callbacks(self, weights: StateDict) -> list[LightningCallback]:
        return [_ProximalTerm(self.mu, weights)] if self.mu > 0 else []


class _ProximalTerm(LightningCallback):
    """Adds ``mu * (w - w_global)`` to the gradients before each optimizer step of a client fit.

    At ``on_fit_start`` (the module is on its device by then) each trainable parameter is paired
    with its global value, moved to the parameter's device and dtype; the pairs are dropped at
    ``teardown``, so nothing stays on the device between fits.
    """

    def __init__(self, mu: float, weights: StateDict) -> None:
        self.mu = mu
        self.weights = weights
        self._anchors: dict[int, torch.Tensor] = {}

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        anchors: dict[int, torch.Tensor] = {}
        for name, param in pl_module.named_parameters():
            if not param.requires_grad:
                continue
            anchor = self.weights.get(name)
            if anchor is None or anchor.shape != param.shape:
                found = "missing" if anchor is None else f"of shape {tuple(anchor.shape)}"
                raise ValueError(
                    f"FedProx: the global weights have no `{name}` of shape {tuple(param.shape)} ({found}); "
                    "the proximal term needs the module's parameters under their state_dict names"
                )
            anchors[id(param)] = anchor.detach().to(device=param.device, dtype=param.dtype)
        self._anchors = anchors

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        scale = _pending_grad_scale(trainer, optimizer)
        with torch.no_grad():
            for group in optimizer.param_groups:
                for param in group["params"]:
                    anchor = self._anchors.get(id(param))
                    if anchor is None or param.grad is None:
                        continue
                    term = param.detach() - anchor
                    if scale is not None:
                        term = term * scale.to(term.dtype)
                    param.grad.add_(term, alpha=self.mu)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._anchors = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_anchors": {}}  # device tensors keyed by id(): meaningless elsewhere


def _pending_grad_scale(trainer: Trainer, optimizer: Any) -> torch.Tensor | None:
    """The GradScaler's scale when the gradients are still scaled at ``on_before_optimizer_step``, else ``None``.

    Lightning unscales before the hook, except for optimizers that unscale inside their own
    ``step`` (fused ones); their gradients still carry the scale, and so must the proximal term.
    """
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    if scaler is None or not getattr(optimizer, "_step_supports_amp_scaling", False):
        return None
    scale = getattr(scaler, "_scale", None)  # the scale tensor, read without a device sync
    if isinstance(scale, torch.Tensor):
        return scale.detach()
    return torch.tensor(scaler.get_scale())
