"""Lightning's tensor metrics as the floats native hooks receive."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["floats"]


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
