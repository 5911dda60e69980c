"""What client algorithms that act on gradients share: the parameters a step updates, and the pending grad scale."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from lightning.pytorch import Trainer

__all__ = ["grad_scale_pending", "stepped"]


def stepped(optimizer: Any) -> Iterator[tuple[float, torch.Tensor, torch.Tensor]]:
    """``(lr, parameter, gradient)`` for each parameter of ``optimizer`` with a gradient; a group's ``lr`` read once."""
    for group in optimizer.param_groups:
        lr = float(group["lr"])
        for param in group["params"]:
            if param.grad is not None:
                yield lr, param, param.grad


def grad_scale_pending(trainer: Trainer, optimizer: Any) -> torch.Tensor | None:
    """The GradScaler's scale when the gradients are still scaled at ``on_before_optimizer_step``, else ``None``.

    Lightning unscales before the hook, except for optimizers that unscale inside their own
    ``step`` (fused ones); their gradients still carry the scale, and so must a term added to them.
    """
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    if scaler is None or not getattr(optimizer, "_step_supports_amp_scaling", False):
        return None
    scale = getattr(scaler, "_scale", None)  # the scale tensor, read without a device sync
    if isinstance(scale, torch.Tensor):
        return scale.detach()
    return torch.tensor(scaler.get_scale())
