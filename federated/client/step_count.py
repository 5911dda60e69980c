"""FedNova's client half: the number of local optimizer steps, sent back with the update."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from federated.client.algorithm import ClientAlgorithm

if TYPE_CHECKING:
    from lightning.pytorch import LightningModule, Trainer

    from federated.messages import StateDict

__all__ = ["StepCount"]


class StepCount(ClientAlgorithm):
    """Counts the optimizer steps of a client fit and replies ``{"steps": n}``: FedNova normalises by it.

    A step is counted at each ``on_before_optimizer_step`` (so once per ``accumulate_grad_batches``
    batches, and for each optimizer of a module that has several). It keeps nothing.

    Example:
        >>> count = StepCount()
        >>> count.begin({}, {}, {})
        >>> count.end(None)
        ({'steps': 0}, {})
    """

    name = "fednova"

    def __init__(self) -> None:
        self.steps = 0

    def begin(self, weights: StateDict, payload: Mapping[str, Any], state: Mapping[str, Any]) -> None:
        self.steps = 0

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        self.steps += 1

    def end(self, module: LightningModule) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"steps": self.steps}, {}
