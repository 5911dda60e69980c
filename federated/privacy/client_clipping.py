"""The client half of client-side clipping: the fit's update clipped before it leaves the client."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from federated.client.algorithm import ClientAlgorithm
from federated.privacy.clipping import clip_update

if TYPE_CHECKING:
    from lightning.pytorch import LightningModule

    from federated.messages import StateDict

__all__ = ["UpdateClipping"]


class UpdateClipping(ClientAlgorithm):
    """Clips the client's update to the norm the server sent, in the module, before its weights are sent.

    Flower's ``fixedclipping_mod`` and ``adaptiveclipping_mod`` as a client algorithm. The task's
    payload holds ``clipping_norm`` and the ``local_keys`` patterns; after the fit, the shared
    weights become ``start + clip(weights - start)`` (:func:`~federated.privacy.clipping.clip_update`),
    so the update the strategy receives is clipped already. The reply says whether it had to be
    scaled down (``{"clipped": True}``), the bit adaptive clipping counts. It keeps nothing.

    Example:
        >>> algorithm = UpdateClipping()
        >>> algorithm.begin({"w": torch.zeros(2)}, {"clipping_norm": 1.0}, {})
        >>> algorithm.name, algorithm.clipping_norm
        ('dp_clipping', 1.0)
    """

    name = "dp_clipping"

    def __init__(self) -> None:
        self._start: StateDict = {}
        self._local: tuple[str, ...] = ()
        self.clipping_norm = 0.0

    def begin(self, weights: StateDict, payload: Mapping[str, Any], state: Mapping[str, Any]) -> None:
        if "clipping_norm" not in payload:
            raise ValueError(f"the task's `{self.name}` payload has no `clipping_norm` (no DP wrapper?)")
        self.clipping_norm = float(payload["clipping_norm"])
        self._local = tuple(payload.get("local_keys", ()))
        self._start = weights

    def end(self, module: LightningModule) -> tuple[dict[str, Any], dict[str, Any]]:
        state = module.state_dict()  # the module's own tensors: writing them writes the module
        start = {
            name: tensor
            for name, tensor in self._start.items()
            if name in state and not any(fnmatch.fnmatchcase(name, p) for p in self._local)
        }
        clipped, was_clipped = clip_update({name: state[name] for name in start}, start, self.clipping_norm)
        if was_clipped:
            with torch.no_grad():
                for name in start:
                    state[name].copy_(clipped[name])
        self._start = {}
        return {"clipped": was_clipped}, {}
