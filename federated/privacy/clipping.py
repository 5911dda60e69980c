"""The maths of user-level DP on model updates: the update's norm, clipping it, and Gaussian noise.

Pure functions over state dicts. An *update* is a client's weights minus the global weights its
fit started from; clipping scales the whole update (every floating tensor together, "flat"
clipping, McMahan et al. 2018) so that its L2 norm is at most the clipping norm, and gives back
``start + clipped update``. Integer and boolean tensors (BatchNorm's ``num_batches_tracked``) are
neither counted in the norm nor scaled: they pass as the client sent them. Differences are taken
in the tensors' own dtype (``float32`` for half-precision ones), as Flower's are, and their squares
summed in ``float64``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch

__all__ = ["add_gaussian_noise", "clip_update", "update_norm"]


def update_norm(weights: Mapping[str, torch.Tensor], start: Mapping[str, torch.Tensor]) -> float:
    """The L2 norm of ``weights - start`` over the floating tensors of ``start``.

    Example:
        >>> update_norm({"w": torch.tensor([3.0, 4.0])}, {"w": torch.zeros(2)})
        5.0
    """
    return _norm(_differences(weights, start).values())


def clip_update(
    weights: Mapping[str, torch.Tensor], start: Mapping[str, torch.Tensor], clipping_norm: float
) -> tuple[dict[str, torch.Tensor], bool]:
    """``start + (weights - start) * min(1, clipping_norm / norm)`` and whether the update was scaled down.

    Only the names of ``start`` are clipped (the shared ones: local keys are not in it); other
    entries of ``weights`` are returned as they are.

    Args:
        weights: A client's weights.
        start: The global weights the client's fit started from.
        clipping_norm: The largest L2 norm the update may have, above 0.

    Example:
        >>> clipped, was_clipped = clip_update({"w": torch.tensor([3.0, 4.0])}, {"w": torch.zeros(2)}, 1.0)
        >>> clipped["w"], was_clipped
        (tensor([0.6000, 0.8000]), True)
    """
    differences = _differences(weights, start)
    norm = _norm(differences.values())
    if norm <= clipping_norm:
        return dict(weights), False
    scale = clipping_norm / norm
    out = dict(weights)
    with torch.no_grad():
        for name, difference in differences.items():
            base = start[name].to(device=difference.device, dtype=difference.dtype)
            out[name] = difference.mul_(scale).add_(base).to(weights[name].dtype)
    return out, True


def add_gaussian_noise(weights: Mapping[str, torch.Tensor], std: float) -> dict[str, torch.Tensor]:
    """``weights`` with ``N(0, std^2)`` added to every coordinate of each floating tensor.

    The noise is drawn from torch's default generator, in ``float32`` (``float64`` for ``float64``
    tensors), in the order of ``weights``; the round loop seeds that generator from the run's seed
    and the round before aggregation, so a resumed run draws the same noise.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> add_gaussian_noise({"w": torch.zeros(2), "n": torch.tensor(3)}, 0.0)
        {'w': tensor([0., 0.]), 'n': tensor(3)}
    """
    out: dict[str, torch.Tensor] = {}
    for name, tensor in weights.items():
        if not tensor.is_floating_point() or std == 0:
            out[name] = tensor
            continue
        dtype = torch.float64 if tensor.dtype == torch.float64 else torch.float32
        noise = torch.randn(tensor.shape, dtype=dtype) * std
        out[name] = (tensor.to(dtype) + noise.to(tensor.device)).to(tensor.dtype)
    return out


def _differences(weights: Mapping[str, torch.Tensor], start: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``weights[name] - start[name]`` for each floating tensor of ``start``, new tensors (``float32`` at least)."""
    out: dict[str, torch.Tensor] = {}
    for name, base in start.items():
        if base.is_floating_point():
            tensor = weights[name].detach()
            dtype = tensor.dtype if tensor.dtype in (torch.float32, torch.float64) else torch.float32
            out[name] = tensor.to(dtype) - base.detach().to(device=tensor.device, dtype=dtype)
    return out


def _norm(tensors: Iterable[torch.Tensor]) -> float:
    """The L2 norm of ``tensors`` flattened together, their squares summed in ``float64``."""
    squares = [torch.linalg.vector_norm(t, dtype=torch.float64).square() for t in tensors]
    return math.sqrt(float(torch.stack(squares).sum())) if squares else 0.0
