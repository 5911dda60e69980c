"""Server-side optimizer steps on model states: pure functions, as :mod:`federated.strategies.aggregate`.

The server treats the change of the aggregated model, ``delta = mean - weights``, as a
pseudo-gradient (its negative, as Reddi et al. 2021 and Hsu et al. 2019 write it) and takes one
optimizer step per round:

- :func:`adaptive_step` (FedAdam, FedYogi, FedAdagrad; Reddi et al., "Adaptive Federated
  Optimization", Algorithm 2)::

      m = beta_1 * m + (1 - beta_1) * delta
      v = adam:    beta_2 * v + (1 - beta_2) * delta**2
          yogi:    v - (1 - beta_2) * delta**2 * sign(v - delta**2)
          adagrad: v + delta**2
      w = w + eta * m / (sqrt(v) + tau)

- :func:`momentum_step` (FedAvgM; Hsu et al., "Measuring the Effects of Non-Identical Data
  Distribution")::

      g = w - mean;  b = g on the first step, else momentum * b + g;  w = w - lr * b

Only floating tensors take a step; the others (BatchNorm's ``num_batches_tracked``) take the
aggregated value as it is. Moments start at zero (as Flower's strategies) and are kept in the
dtype of their tensor, at least ``float32``. No input is modified: every function returns new
tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch

from federated.messages import StateDict

__all__ = [
    "Moments",
    "SecondMoment",
    "adaptive_step",
    "first_moment",
    "momentum_step",
    "pseudo_gradient",
    "second_moment",
]

Moments = dict[str, torch.Tensor]
"""One optimizer buffer per floating tensor name."""

SecondMoment = Literal["adam", "yogi", "adagrad"]
"""How :func:`second_moment` updates ``v``."""


def pseudo_gradient(mean: StateDict, weights: StateDict) -> Moments:
    """``mean - weights`` for each floating tensor, in the buffer dtype (at least ``float32``).

    Example:
        >>> mean = {"w": torch.tensor([3.0]), "num_batches_tracked": torch.tensor(2)}
        >>> pseudo_gradient(mean, {"w": torch.tensor([1.0]), "num_batches_tracked": torch.tensor(1)})
        {'w': tensor([2.])}
    """
    return {
        name: _buffer(mean[name]) - _buffer(tensor).to(mean[name].device)
        for name, tensor in weights.items()
        if tensor.is_floating_point()
    }


def first_moment(m: Mapping[str, torch.Tensor] | None, delta: Mapping[str, torch.Tensor], beta_1: float) -> Moments:
    """``beta_1 * m + (1 - beta_1) * delta``, with ``m`` zero when ``None``.

    Example:
        >>> first_moment(None, {"w": torch.tensor([2.0])}, beta_1=0.5)
        {'w': tensor([1.])}
    """
    if m is None:
        return {name: (1.0 - beta_1) * d for name, d in delta.items()}
    return {name: beta_1 * m[name] + (1.0 - beta_1) * d for name, d in delta.items()}


def second_moment(
    v: Mapping[str, torch.Tensor] | None, delta: Mapping[str, torch.Tensor], rule: SecondMoment, beta_2: float = 0.0
) -> Moments:
    """The second moment ``v`` after ``delta``, by Adam's, Yogi's or Adagrad's rule (``v`` zero when ``None``).

    Args:
        v: The previous second moment, or ``None`` on the first step.
        delta: The pseudo-gradient.
        rule: ``"adam"``, ``"yogi"`` or ``"adagrad"`` (which ignores ``beta_2``).
        beta_2: The decay of Adam's and Yogi's rules. Defaults to ``0.0``.

    Raises:
        ValueError: Unknown ``rule``.

    Example:
        >>> second_moment(None, {"w": torch.tensor([2.0])}, "adam", beta_2=0.75)
        {'w': tensor([1.])}
    """
    if rule not in ("adam", "yogi", "adagrad"):
        raise ValueError(f"`rule` can be 'adam', 'yogi' or 'adagrad', got {rule!r}")
    out: Moments = {}
    for name, d in delta.items():
        squared = d * d
        previous = torch.zeros_like(squared) if v is None else v[name]
        if rule == "adam":
            out[name] = beta_2 * previous + (1.0 - beta_2) * squared
        elif rule == "yogi":
            out[name] = previous - (1.0 - beta_2) * squared * torch.sign(previous - squared)
        else:
            out[name] = previous + squared
    return out


def adaptive_step(
    weights: StateDict,
    mean: StateDict,
    m: Mapping[str, torch.Tensor] | None,
    v: Mapping[str, torch.Tensor] | None,
    *,
    rule: SecondMoment,
    eta: float,
    beta_1: float,
    beta_2: float,
    tau: float,
) -> tuple[dict[str, torch.Tensor], Moments, Moments]:
    """One FedAdam / FedYogi / FedAdagrad step from the global ``weights`` towards the aggregated ``mean``.

    Args:
        weights: The global weights the round started from.
        mean: The aggregated (FedAvg) weights of the round.
        m: The first moment, ``None`` before the first step.
        v: The second moment, ``None`` before the first step.
        rule: The second-moment rule: ``"adam"``, ``"yogi"`` or ``"adagrad"``.
        eta: The server learning rate.
        beta_1: The first-moment decay.
        beta_2: The second-moment decay (unused by ``"adagrad"``).
        tau: The adaptivity constant added to ``sqrt(v)``.

    Returns:
        The new weights (each in its dtype and on ``mean``'s device) and the new ``m`` and ``v``.

    Example:
        >>> w, m, v = adaptive_step(
        ...     {"w": torch.tensor([1.0])}, {"w": torch.tensor([3.0])}, None, None,
        ...     rule="adagrad", eta=0.5, beta_1=0.0, beta_2=0.0, tau=0.0,
        ... )
        >>> w["w"], m["w"], v["w"]
        (tensor([1.5000]), tensor([2.]), tensor([4.]))
    """
    delta = pseudo_gradient(mean, weights)
    m = first_moment(m, delta, beta_1)
    v = second_moment(v, delta, rule, beta_2)
    out: dict[str, torch.Tensor] = {}
    for name, target in mean.items():
        if name not in delta:
            out[name] = target.clone()
            continue
        step = eta * m[name] / (torch.sqrt(v[name]) + tau)
        out[name] = (_buffer(weights[name]).to(step.device) + step).to(target.dtype)
    return out, m, v


def momentum_step(
    weights: StateDict,
    mean: StateDict,
    buffer: Mapping[str, torch.Tensor] | None,
    *,
    server_learning_rate: float,
    server_momentum: float,
) -> tuple[dict[str, torch.Tensor], Moments | None]:
    """One FedAvgM step: SGD with momentum on the pseudo-gradient ``weights - mean``.

    With ``server_momentum == 0`` no buffer is kept (``None`` is returned), and with
    ``server_learning_rate == 1`` as well the result is ``mean`` itself, as FedAvg.

    Args:
        weights: The global weights the round started from.
        mean: The aggregated (FedAvg) weights of the round.
        buffer: The momentum buffer, ``None`` before the first step.
        server_learning_rate: The server learning rate.
        server_momentum: The momentum factor.

    Returns:
        The new weights and the new momentum buffer.

    Example:
        >>> w, b = momentum_step(
        ...     {"w": torch.tensor([1.0])}, {"w": torch.tensor([0.0])}, {"w": torch.tensor([2.0])},
        ...     server_learning_rate=1.0, server_momentum=0.5,
        ... )
        >>> w["w"], b["w"]
        (tensor([-1.]), tensor([2.]))
    """
    if server_momentum == 0.0 and server_learning_rate == 1.0:
        return {name: t.clone() for name, t in mean.items()}, None
    gradient = {name: -d for name, d in pseudo_gradient(mean, weights).items()}
    if server_momentum > 0.0:
        if buffer is not None:
            gradient = {name: server_momentum * buffer[name] + g for name, g in gradient.items()}
        new_buffer: Moments | None = gradient
    else:
        new_buffer = None
    out: dict[str, torch.Tensor] = {}
    for name, target in mean.items():
        if name not in gradient:
            out[name] = target.clone()
            continue
        g = gradient[name]
        out[name] = (_buffer(weights[name]).to(g.device) - server_learning_rate * g).to(target.dtype)
    return out, new_buffer


def _buffer(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as a buffer: its dtype, at least ``float32``."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))
