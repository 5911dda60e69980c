"""Helpers of the federated tests (and of the Ray backend's, which compare against them)."""

from __future__ import annotations

import random
from typing import Any

from callbacks import Callback


class AdaptiveSelection(Callback):
    """Seed 003's adaptive selection with its state: draws from Python's global RNG each round."""

    def __init__(self) -> None:
        self.scores: dict[int, float] = {}

    def state_dict(self) -> dict[str, Any]:
        return {"scores": dict(self.scores)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.scores = dict(state_dict["scores"])

    def on_round_end(self, result: Any) -> None:
        for update in result.updates:
            self.scores[update.client_id] = update.metrics["train_loss"]

    def on_round_start(self, trainer: Any) -> None:
        if random.random() < 0.7 and self.scores:
            trainer.client_selection_weights = {c: 0.5 + s for c, s in self.scores.items()}
