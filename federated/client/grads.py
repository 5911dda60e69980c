"""What client algorithms that act on gradients share: tensors paired with parameters, and the pending grad scale."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from lightning.pytorch import LightningModule, Trainer

    from federated.messages import StateDict

__all__ = ["anchors", "grad_scale_pending"]


def anchors(module: LightningModule, tensors: StateDict, who: str) -> dict[int, torch.Tensor]:
    """``tensors`` by ``id()`` of the trainable parameter of ``module`` of each name, on its device and dtype.

    Called at ``on_fit_start``, when the module is on its device.

    Raises:
        ValueError: A trainable parameter has no tensor of its shape in ``tensors`` (``who`` names the algorithm).
    """
    out: dict[int, torch.Tensor] = {}
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        tensor = tensors.get(name)
        if tensor is None or tensor.shape != param.shape:
            found = "missing" if tensor is None else f"of shape {tuple(tensor.shape)}"
            raise ValueError(
                f"{who}: no `{name}` of shape {tuple(param.shape)} ({found}); it needs the module's parameters "
                "under their state_dict names"
            )
        out[id(param)] = tensor.detach().to(device=param.device, dtype=param.dtype)
    return out


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
