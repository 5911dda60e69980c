"""What OiaFed's callbacks receive: its ``trainer`` and ``learner`` seen through this project's objects, and
its metric types (``EpochMetrics``, ``RoundMetrics``, ``TrainResult``, ``EvalResult``) built from OiaFed's own classes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from callbacks.oiafed.loader import import_oiafed

__all__ = [
    "LearnerView",
    "SavableModel",
    "TrainerView",
    "epoch_metrics",
    "eval_result",
    "round_metrics",
    "train_result",
]


class _View:
    """Reads and writes every attribute through to ``target``, less the view's own (its properties, ``_own``)."""

    _own: frozenset[str] = frozenset()

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_target"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in type(self)._own or isinstance(getattr(type(self), name, None), property):
            object.__setattr__(self, name, value)
        else:
            setattr(object.__getattribute__(self, "_target"), name, value)


class SavableModel(_View):
    """A model with OiaFed's ``save(path)``: ``torch.save`` of its state dict (``torch.load(weights_only=True)``).

    Args:
        model: A ``torch.nn.Module`` (the global LightningModule); every other attribute is its own.
    """

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model's state dict (CPU tensors) to ``path``."""
        import torch

        state = {k: v.detach().to("cpu") for k, v in object.__getattribute__(self, "_target").state_dict().items()}
        torch.save(state, os.fspath(path))


class TrainerView(_View):
    """The ``trainer`` an OiaFed callback gets: the federated trainer, with OiaFed's names on it.

    ``stop_training`` is the trainer's ``should_stop`` (setting it stops the run after the round, as
    OiaFed's ``EarlyStopping`` does), ``model`` has OiaFed's ``save(path)``, ``federated_trainer`` is
    the trainer itself; every other attribute reads and writes through to it.

    Args:
        trainer: The ``FederatedTrainer`` (or a ``lightning.Trainer`` in a centralised fit).
        tracker: What ``trainer._tracker`` gives (``MLflowCallback`` logs through it). Defaults to ``None``.
    """

    _own = frozenset({"_tracker"})

    def __init__(self, trainer: Any, tracker: Any = None) -> None:
        super().__init__(trainer)
        object.__setattr__(self, "_tracker", tracker)

    @property
    def federated_trainer(self) -> Any:
        """The trainer this view shows."""
        return object.__getattribute__(self, "_target")

    @property
    def stop_training(self) -> bool:
        """The trainer's ``should_stop``."""
        return bool(self.federated_trainer.should_stop)

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        self.federated_trainer.should_stop = bool(value)

    @property
    def model(self) -> SavableModel:
        """The global model, with OiaFed's ``save(path)``."""
        return SavableModel(self.federated_trainer.model)


class LearnerView(_View):
    """The ``learner`` an OiaFed callback gets: a client (or a LightningModule) with OiaFed's learner names.

    ``_node_id`` is ``"client_<id>"`` (``"learner"`` in a centralised fit), ``_global_epoch_counter``
    counts the epochs it has trained in this run; every other attribute reads and writes through.

    Args:
        learner: The ``federated.Client`` (or the LightningModule).
        node_id: Its OiaFed node id.
        tracker: What ``learner._tracker`` gives. Defaults to ``None``.
        global_epoch: Epochs trained before this one. Defaults to ``0``.
    """

    _own = frozenset({"_node_id", "_tracker", "_global_epoch_counter"})

    def __init__(self, learner: Any, node_id: str, tracker: Any = None, global_epoch: int = 0) -> None:
        super().__init__(learner)
        object.__setattr__(self, "_node_id", node_id)
        object.__setattr__(self, "_tracker", tracker)
        object.__setattr__(self, "_global_epoch_counter", global_epoch)

    @property
    def learner(self) -> Any:
        """The object this view shows."""
        return object.__getattribute__(self, "_target")


def _types() -> Any:
    return import_oiafed("oiafed.core.types")


def _loss(logs: Mapping[str, float]) -> float:
    for key in ("avg_loss", "train_loss", "loss"):
        if key in logs:
            return float(logs[key])
    return float("nan")


def epoch_metrics(epoch: int, logs: Mapping[str, float], total_samples: int) -> Any:
    """OiaFed's ``EpochMetrics``: ``avg_loss`` is the epoch's ``avg_loss`` or ``train_loss``, ``metrics`` its logs."""
    return _types().EpochMetrics(epoch=epoch, avg_loss=_loss(logs), total_samples=total_samples, metrics=dict(logs))


def train_result(
    weights: Any, num_samples: int, epochs: Sequence[Any], metrics: Mapping[str, float], metadata: Mapping[str, Any]
) -> Any:
    """OiaFed's ``TrainResult`` of a fit, its ``metrics`` a ``TrainMetrics`` with the ``EpochMetrics`` of each epoch."""
    types = _types()
    train = types.TrainMetrics(
        total_epochs=len(epochs),
        final_loss=epochs[-1].avg_loss if epochs else _loss(metrics),
        total_samples=num_samples * len(epochs),
        metrics=dict(metrics),
        epoch_history=list(epochs),
    )
    return types.TrainResult(weights=weights, num_samples=num_samples, metrics=train, metadata=dict(metadata))


def round_metrics(round_num: int, num_clients: int, total_samples: int, metrics: Mapping[str, float]) -> Any:
    """OiaFed's ``RoundMetrics`` of a round."""
    return _types().RoundMetrics(
        round_num=round_num, num_clients=num_clients, total_samples=total_samples, metrics=dict(metrics)
    )


def eval_result(num_samples: int, metrics: Mapping[str, float], metadata: Mapping[str, Any]) -> Any:
    """OiaFed's ``EvalResult`` of an evaluation."""
    return _types().EvalResult(num_samples=num_samples, metrics=dict(metrics), metadata=dict(metadata))
