"""What a client returns and what a round and a federation produce: small dataclasses.

``to_dict``/``from_dict`` turn the results into primitives for the federation checkpoint (which is
loaded with ``torch.load(weights_only=True)``); update weights never go into the history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import torch

__all__ = [
    "ClientEvaluation",
    "ClientFailure",
    "ClientUpdate",
    "FederationResult",
    "RoundResult",
    "StateDict",
    "late",
]

StateDict: TypeAlias = Mapping[str, torch.Tensor]
"""A model's weights by name, as ``state_dict()`` gives them."""


@dataclass(eq=False)
class ClientUpdate:
    """One client's result of a round: its trained weights and training metrics.

    Attributes:
        client_id: The client, ``0 .. N-1`` in the order of ``client_data``.
        num_samples: How many training samples the client holds: its FedAvg weight.
        weights: The trained state dict (on the CPU). ``None`` once folded into a streaming
            aggregation, and in the history.
        metrics: The client's training metrics of its last local epoch, as floats.
        epoch_metrics: The metrics of each local epoch, in order.

    Example:
        >>> update = ClientUpdate(client_id=3, num_samples=120, metrics={"train_loss": 0.4})
        >>> update.to_dict()
        {'client_id': 3, 'num_samples': 120, 'metrics': {'train_loss': 0.4}}
    """

    client_id: int
    num_samples: int
    weights: dict[str, torch.Tensor] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    epoch_metrics: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The update without its weights, as primitives."""
        return {"client_id": self.client_id, "num_samples": self.num_samples, "metrics": dict(self.metrics)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClientUpdate:
        """The inverse of :meth:`to_dict` (without weights)."""
        return cls(client_id=data["client_id"], num_samples=data["num_samples"], metrics=dict(data["metrics"]))


@dataclass
class ClientFailure:
    """A client left out of a round: it raised, or returned non-finite weights.

    Attributes:
        client_id: The client.
        error: ``"ExceptionType: message"``, or a description of the non-finite tensors.
        traceback: The formatted traceback, when the client raised. Defaults to ``""``.
    """

    client_id: int
    error: str
    traceback: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The failure as primitives."""
        return {"client_id": self.client_id, "error": self.error, "traceback": self.traceback}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClientFailure:
        """The inverse of :meth:`to_dict`."""
        return cls(client_id=data["client_id"], error=data["error"], traceback=data.get("traceback", ""))


def late(client: Any, timeout: float | None, started: bool = True) -> ClientFailure:
    """The failure of a client not back within the round's ``timeout`` (``started``: its fit had begun)."""
    what = "did not return" if started else "was not started"
    error = f"{what} within the round's deadline (round_timeout={timeout:g} s)"
    return ClientFailure(client_id=client.client_id, error=error)


@dataclass
class ClientEvaluation:
    """A client's evaluation of the global model (its personal model, with ``local_keys``) on its own data.

    Attributes:
        client_id: The client.
        num_samples: How many validation samples it evaluated on: its weight in the aggregate.
        metrics: What the model's ``validation_step`` logged, as floats (``val_loss``, ``accuracy``).
    """

    client_id: int
    num_samples: int
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The evaluation as primitives."""
        return {"client_id": self.client_id, "num_samples": self.num_samples, "metrics": dict(self.metrics)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClientEvaluation:
        """The inverse of :meth:`to_dict`."""
        return cls(client_id=data["client_id"], num_samples=data["num_samples"], metrics=dict(data["metrics"]))


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
