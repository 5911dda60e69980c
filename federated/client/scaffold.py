"""SCAFFOLD's client half: each step corrected by ``c - c_i``, and the client's control variate ``c_i`` kept."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from federated.client.algorithm import ClientAlgorithm
from federated.client.grads import grad_scale_pending, stepped

if TYPE_CHECKING:
    from lightning.pytorch import LightningModule, Trainer

    from federated.messages import StateDict

__all__ = ["ControlVariate"]


class ControlVariate(ClientAlgorithm):
    """Corrects a client's drift with control variates (Karimireddy et al., 2020; option II of their update).

    The task's payload holds the server's control variate ``c`` (and the ``local_keys`` patterns the
    federation never aggregates); the client's own ``c_i`` is its kept state, zero before its first
    fit. Before each optimizer step, ``c - c_i`` is added to the gradient of each trainable
    parameter (a name missing from ``c`` or ``c_i`` counts as zero; local keys are left alone). After
    the fit, with ``x`` the weights the fit started from, ``y`` those it ended with and ``L`` the sum
    over the optimizer steps of the learning rate of the parameter's group (``K * lr`` for a
    constant ``lr``)::

        c_i+ = c_i - c + (x - y) / L        kept for this client
        delta = c_i+ - c_i                  the reply, under ``"delta_c"``

    Under 16-mixed the gradients are unscaled at the hook, as for FedProx's term; a step the
    GradScaler skips still counts in ``L``. The paper's local optimizer is plain SGD; with momentum
    or an adaptive optimizer the correction is added the same way, and ``L`` counts the group's
    ``lr``.

    Example:
        >>> algorithm = ControlVariate()
        >>> algorithm.name
        'scaffold'
    """

    name = "scaffold"

    def __init__(self) -> None:
        self._c: StateDict = {}
        self._c_i: StateDict = {}
        self._local: tuple[str, ...] = ()
        self._start: StateDict = {}
        self._corrections: dict[int, torch.Tensor | None] = {}  # by id() of the parameter, on its device
        self._lr_sums: dict[int, float] = {}

    def begin(self, weights: StateDict, payload: Mapping[str, Any], state: Mapping[str, Any]) -> None:
        self._start = weights
        self._c = payload.get("c", {})
        self._local = tuple(payload.get("local_keys", ()))
        self._c_i = state.get("c_i", {})
        self._lr_sums = {}

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._corrections = {}
        for name, param in self._trained(pl_module):
            c, c_i = self._c.get(name), self._c_i.get(name)
            correction = None
            if c is not None or c_i is not None:
                zero = torch.zeros(param.shape)
                correction = (zero if c is None else c) - (zero if c_i is None else c_i)
                correction = correction.to(device=param.device, dtype=param.dtype)
            self._corrections[id(param)] = correction
            self._lr_sums[id(param)] = 0.0

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        scale = grad_scale_pending(trainer, optimizer)
        with torch.no_grad():
            for lr, param, grad in stepped(optimizer):
                key = id(param)
                if key not in self._lr_sums:
                    continue
                self._lr_sums[key] += lr
                correction = self._corrections.get(key)
                if correction is not None:
                    grad.add_(correction if scale is None else correction * scale.to(correction.dtype))

    def end(self, module: LightningModule) -> tuple[dict[str, Any], dict[str, Any]]:
        delta: dict[str, torch.Tensor] = {}
        kept = dict(self._c_i)
        for name, param in self._trained(module):
            lr_sum = self._lr_sums.get(id(param), 0.0)
            if lr_sum <= 0:
                continue  # never stepped: its variate stays as it was
            x, y = self._start[name].double(), param.detach().to("cpu", torch.float64)
            c = self._c.get(name, torch.zeros(param.shape)).double()
            c_i = self._c_i.get(name, torch.zeros(param.shape)).double()
            new = c_i - c + (x - y) / lr_sum
            delta[name] = (new - c_i).float()
            kept[name] = new.float()
        self._lr_sums = {}
        return {"delta_c": delta}, {"c_i": kept}

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._corrections = {}

    def _trained(self, module: LightningModule) -> list[tuple[str, torch.nn.Parameter]]:
        return [
            (name, param)
            for name, param in module.named_parameters()
            if param.requires_grad and not any(fnmatch.fnmatchcase(name, p) for p in self._local)
        ]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_corrections": {}}  # device tensors keyed by id(): meaningless elsewhere
