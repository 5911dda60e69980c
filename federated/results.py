"""What a round and a federation produce: small dataclasses over the clients' replies.

``to_dict``/``from_dict`` turn the results into primitives for the federation checkpoint (which is
loaded with ``torch.load(weights_only=True)``); update weights and payloads never go into the history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from federated.messages import ClientEvaluation, ClientFailure, ClientUpdate

__all__ = ["FederationResult", "RoundResult"]


@dataclass
class RoundResult:
    """The outcome of one round, as ``on_round_end(trainer, round_num, result)`` receives it.

    Attributes:
        round_num: The round, counting from 1.
        metrics: The server's evaluation of the global model (e.g. ``accuracy``, ``val_loss``), the
            aggregate of the clients' evaluations under ``clients/`` (``clients/accuracy``), and the
            sample-weighted means of the clients' fit metrics (``train_loss``, ``lr``, and their
            local validation's where the server has no such metric), as floats.
        updates: The successful clients' updates, in the order they trained.
        failures: The clients left out (of training or of the evaluation).
        selected: The client ids sampled for the round.
        evaluations: The clients' evaluations of the global model this round, by client id order.
    """

    round_num: int
    metrics: dict[str, float] = field(default_factory=dict)
    updates: list[ClientUpdate] = field(default_factory=list)
    failures: list[ClientFailure] = field(default_factory=list)
    selected: list[int] = field(default_factory=list)
    evaluations: list[ClientEvaluation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The round as primitives (update weights left out)."""
        return {
            "round_num": self.round_num,
            "metrics": dict(self.metrics),
            "updates": [u.to_dict() for u in self.updates],
            "failures": [f.to_dict() for f in self.failures],
            "selected": list(self.selected),
            "evaluations": [e.to_dict() for e in self.evaluations],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoundResult:
        """The inverse of :meth:`to_dict`."""
        return cls(
            round_num=data["round_num"],
            metrics=dict(data["metrics"]),
            updates=[ClientUpdate.from_dict(u) for u in data["updates"]],
            failures=[ClientFailure.from_dict(f) for f in data["failures"]],
            selected=list(data["selected"]),
            evaluations=[ClientEvaluation.from_dict(e) for e in data.get("evaluations", [])],
        )


@dataclass
class FederationResult:
    """What ``FederatedTrainer.fit`` returns, and what ``on_train_end(trainer, result)`` receives.

    Attributes:
        history: One :class:`RoundResult` per completed round, in order.
        weights: The final global state dict.
        stopped_early: Whether a callback set ``should_stop`` before the last round.
        interrupted: Whether the run ended with an exception (seen only by ``on_train_end``).
    """

    history: list[RoundResult]
    weights: dict[str, torch.Tensor]
    stopped_early: bool = False
    interrupted: bool = False

    @property
    def rounds(self) -> int:
        """The number of completed rounds."""
        return len(self.history)

    @property
    def metrics(self) -> dict[str, float]:
        """The metrics of the last completed round (empty if none)."""
        return dict(self.history[-1].metrics) if self.history else {}
