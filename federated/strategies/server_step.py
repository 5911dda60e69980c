"""The base of strategies that step a server optimizer after FedAvg's mean, and their moment buffers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from federated.strategies.fedavg import FedAvg

if TYPE_CHECKING:
    from federated.messages import StateDict

__all__ = ["ServerStep", "clone_state", "load_moments"]


def clone_state(state: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """A copy of an optimizer buffer for ``state_dict()`` (empty when there is none yet)."""
    return {name: t.detach().clone() for name, t in (state or {}).items()}


def load_moments(state: Any, key: str) -> dict[str, torch.Tensor] | None:
    """The buffer saved under ``key`` by :func:`clone_state`, copied; ``None`` when it was empty."""
    buffer = state.get(key) or {}
    if not isinstance(buffer, dict) or not all(isinstance(t, torch.Tensor) for t in buffer.values()):
        raise ValueError(f"the strategy state's `{key}` must map tensor names to tensors, got {type(buffer).__name__}")
    return {name: t.detach().clone() for name, t in buffer.items()} or None


class ServerStep(FedAvg):
    """FedAvg's streaming mean, then a server update from the weights the round started with."""

    _global: StateDict | None = None

    def begin_round(self, round_num: int, weights: StateDict) -> None:
        super().begin_round(round_num, weights)
        self._global = weights

    def finish_round(self) -> dict[str, torch.Tensor]:
        mean = super().finish_round()
        if self._global is None:
            raise ValueError(f"{type(self).__name__} needs `begin_round(round_num, weights)` before `finish_round()`")
        weights = self.server_step(self._global, mean)
        self._global = None
        return weights

    def server_step(self, global_weights: StateDict, mean: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The new global weights from the round's starting ones and the clients' mean."""
        raise NotImplementedError(f"{type(self).__name__} must implement `server_step(global_weights, mean)`")
