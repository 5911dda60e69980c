"""What native hooks receive of Lightning's training: metrics as floats, the learning rate, the mean step loss."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["EPSILON", "EPSILON_NEXT", "PRIVACY_LOSSES", "StepLosses", "first_lr", "floats"]

EPSILON = "dp/epsilon"
"""The metric of the epsilon DP-SGD has spent so far (:class:`~lightning_bridge.dp_sgd.DPSGD`)."""

EPSILON_NEXT = "dp/epsilon_next"
"""The metric of the epsilon one more epoch of DP-SGD would bring the spent one to."""

PRIVACY_LOSSES = frozenset({EPSILON, EPSILON_NEXT})
"""Metrics a federated round reports as the largest of its clients' (the worst case), not as their mean."""


def floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Scalar metrics as Python floats, with one device-to-host transfer for all tensor values.

    Example:
        >>> floats({"loss": torch.tensor(0.5), "lr": 0.1, "hist": torch.ones(3)})
        {'lr': 0.1, 'loss': 0.5}
    """
    names = [k for k, v in metrics.items() if isinstance(v, torch.Tensor) and v.numel() == 1]
    out = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if names:
        tensors = [metrics[k].detach().reshape(()).float() for k in names]
        if len({t.device for t in tensors}) > 1:
            tensors = [t.cpu() for t in tensors]
        out.update(zip(names, torch.stack(tensors).tolist(), strict=True))
    return out


def first_lr(optimizers: Sequence[torch.optim.Optimizer]) -> float | None:
    """The learning rate of the first parameter group of the first optimizer; ``None`` without optimizers.

    Example:
        >>> sgd = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        >>> first_lr([sgd]), first_lr([])
        (0.1, None)
    """
    return float(optimizers[0].param_groups[0]["lr"]) if optimizers else None


class StepLosses:
    """Adds up the losses of training steps on their device, for their mean: no host sync per step.

    Attributes:
        total: The sum of the losses added, a float32 tensor; ``None`` before the first.
        count: How many losses were added.

    Example:
        >>> losses = StepLosses()
        >>> for value in (0.5, 1.5):
        ...     loss = losses.add({"loss": torch.tensor(value, requires_grad=True)})
        >>> losses.count, losses.mean(), loss.requires_grad
        (2, tensor(1.), False)
    """

    __slots__ = ("count", "total")

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, outputs: Any) -> Any:
        """Add the loss in one step's ``outputs`` (a tensor, or a mapping's ``"loss"``) and return it, detached.

        A loss that is not a tensor (``None``, say) adds nothing and is returned as it is.
        """
        loss = outputs.get("loss") if type(outputs) is dict or isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor):
            if loss.requires_grad:
                loss = loss.detach()
            self.total = loss.float() if self.total is None else self.total + loss
            self.count += 1
        return loss

    def mean(self) -> torch.Tensor | None:
        """The mean of the losses added, a tensor on their device; ``None`` before the first."""
        return None if self.total is None else self.total / self.count
