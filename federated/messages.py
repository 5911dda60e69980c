"""The round's messages: the task a client is sent and what it replies, on every backend.

The round loop sends one :class:`FitTask` per selected client (its round, seed, learning-rate
scale, the weights to start from and a ``payload`` the strategy fills for that client) and gets
back, in the same order, a :class:`ClientUpdate` or a :class:`ClientFailure`; federated
evaluation sends :class:`EvaluateTask` and gets :class:`ClientEvaluation`. A backend carries
tasks out and replies back and nothing else, so a strategy and its client algorithms can send
anything per client without a backend knowing of it. A payload is a dict of tensors and
primitives (nested dicts and lists of them too), by the name of the client algorithm it is for,
as Flower's ``RecordDict`` carries a message's records: whatever crosses a process or machine
boundary is written by ``torch.save`` and read back with ``torch.load(weights_only=True)``.
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
    "EvaluateTask",
    "FitTask",
    "StateDict",
    "late",
]

StateDict: TypeAlias = Mapping[str, torch.Tensor]
"""A model's weights by name, as ``state_dict()`` gives them."""


@dataclass(frozen=True, eq=False)
class FitTask:
    """One client's fit of a round, as the round loop sends it to a backend.

    Attributes:
        client_id: The client, ``0 .. N-1``.
        round_num: The round, counting from 1.
        seed: The seed of this fit (Python's, NumPy's and torch's generators, the loader's sampler).
        weights: The weights the client starts from (CPU tensors); the tasks of a round share one
            dict, which a backend sends once per worker.
        lr_scale: Factor on every learning rate of the client's optimizers for this fit. Defaults to ``1.0``.
        payload: What the strategy sends this client, by client-algorithm name
            (:meth:`~federated.Strategy.configure_fit`). Defaults to none.

    Example:
        >>> task = FitTask(client_id=2, round_num=1, seed=7, weights={"w": torch.zeros(1)})
        >>> task.client_id, task.lr_scale, task.payload
        (2, 1.0, {})
    """

    client_id: int
    round_num: int
    seed: int
    weights: StateDict
    lr_scale: float = 1.0
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class EvaluateTask:
    """One client's evaluation of the global weights (with its own ``local_keys``) on its validation data.

    Attributes:
        client_id: The client.
        round_num: The round, counting from 1.
        seed: The seed of this evaluation.
        weights: The global weights (CPU tensors), shared by the round's tasks.
        payload: What the strategy sends this client (:meth:`~federated.Strategy.configure_evaluate`).
            Defaults to none.
    """

    client_id: int
    round_num: int
    seed: int
    weights: StateDict
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class ClientUpdate:
    """One client's reply to a :class:`FitTask`: its trained weights, training metrics and payload.

    Attributes:
        client_id: The client, ``0 .. N-1`` in the order of ``client_data``.
        num_samples: How many training samples the client holds: its FedAvg weight.
        weights: The trained state dict (on the CPU). ``None`` once folded into a streaming
            aggregation, and in the history.
        metrics: The client's training metrics of its last local epoch, as floats.
        epoch_metrics: The metrics of each local epoch, in order.
        payload: What the client's algorithms send back, by algorithm name (SCAFFOLD's control
            variate delta under ``"scaffold"``): tensors (on the CPU) and primitives.

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
    payload: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The update without its weights and payload, as primitives."""
        return {"client_id": self.client_id, "num_samples": self.num_samples, "metrics": dict(self.metrics)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClientUpdate:
        """The inverse of :meth:`to_dict` (without weights and payload)."""
        return cls(client_id=data["client_id"], num_samples=data["num_samples"], metrics=dict(data["metrics"]))


@dataclass
class ClientEvaluation:
    """A client's reply to an :class:`EvaluateTask`: its metrics of the global model (its personal model,
    with ``local_keys``) on its own data.

    Attributes:
        client_id: The client.
        num_samples: How many validation samples it evaluated on: its weight in the aggregate.
        metrics: What the model's ``validation_step`` logged, as floats (``val_loss``, ``accuracy``).
        payload: What the client sends back beside its metrics: tensors and primitives. Defaults to none.
    """

    client_id: int
    num_samples: int
    metrics: dict[str, float] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The evaluation as primitives (its payload left out)."""
        return {"client_id": self.client_id, "num_samples": self.num_samples, "metrics": dict(self.metrics)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClientEvaluation:
        """The inverse of :meth:`to_dict`."""
        return cls(client_id=data["client_id"], num_samples=data["num_samples"], metrics=dict(data["metrics"]))


@dataclass
class ClientFailure:
    """A client left out of a round: it raised, returned non-finite weights or payload, or was late.

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
