"""Federated learning on Lightning: the round loop, strategies, client data and the built-in model.

``FederatedTrainer`` runs one ``lightning.Trainer.fit`` per selected client per round and fires the
native callbacks' round, aggregate and learner hooks (``callbacks`` package). The subpackages hold
the rest: ``federated.strategies`` (the aggregation functions too), ``federated.data`` (partitions
and data sets), ``federated.backends`` and ``federated.app`` (the YAML application).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from callbacks.lazy import lazy_exports

if TYPE_CHECKING:
    from federated.backends.backend import Backend as Backend
    from federated.backends.ray_backend import RayBackend as RayBackend
    from federated.backends.sequential import SequentialBackend as SequentialBackend
    from federated.client.client import Client as Client
    from federated.client.runner import ClientRunner as ClientRunner
    from federated.data import digits_federation as digits_federation
    from federated.data import partition as partition
    from federated.exceptions import CheckpointError as CheckpointError
    from federated.exceptions import FederationError as FederationError
    from federated.exceptions import NotEnoughClientsError as NotEnoughClientsError
    from federated.messages import ClientEvaluation as ClientEvaluation
    from federated.messages import ClientFailure as ClientFailure
    from federated.messages import ClientUpdate as ClientUpdate
    from federated.messages import EvaluateTask as EvaluateTask
    from federated.messages import FitTask as FitTask
    from federated.models import MLP as MLP
    from federated.progress import RoundProgress as RoundProgress
    from federated.results import FederationResult as FederationResult
    from federated.results import RoundResult as RoundResult
    from federated.strategies.bulyan import Bulyan as Bulyan
    from federated.strategies.fedadagrad import FedAdagrad as FedAdagrad
    from federated.strategies.fedadam import FedAdam as FedAdam
    from federated.strategies.fedavg import FedAvg as FedAvg
    from federated.strategies.fedavgm import FedAvgM as FedAvgM
    from federated.strategies.fedmedian import FedMedian as FedMedian
    from federated.strategies.fednova import FedNova as FedNova
    from federated.strategies.fedopt import FedOpt as FedOpt
    from federated.strategies.fedprox import FedProx as FedProx
    from federated.strategies.fedtrimmedavg import FedTrimmedAvg as FedTrimmedAvg
    from federated.strategies.fedyogi import FedYogi as FedYogi
    from federated.strategies.krum import Krum as Krum
    from federated.strategies.multikrum import MultiKrum as MultiKrum
    from federated.strategies.scaffold import Scaffold as Scaffold
    from federated.strategies.strategy import Strategy as Strategy
    from federated.strategies.wrapper import StrategyWrapper as StrategyWrapper
    from federated.trainer import FederatedTrainer as FederatedTrainer

__all__ = [
    "MLP",
    "Backend",
    "Bulyan",
    "CheckpointError",
    "Client",
    "ClientEvaluation",
    "ClientFailure",
    "ClientRunner",
    "ClientUpdate",
    "EvaluateTask",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedMedian",
    "FedNova",
    "FedOpt",
    "FedProx",
    "FedTrimmedAvg",
    "FedYogi",
    "FederatedTrainer",
    "FederationError",
    "FederationResult",
    "FitTask",
    "Krum",
    "MultiKrum",
    "NotEnoughClientsError",
    "RayBackend",
    "RoundProgress",
    "RoundResult",
    "Scaffold",
    "SequentialBackend",
    "Strategy",
    "StrategyWrapper",
    "digits_federation",
    "partition",
]

_LAZY = {
    "Backend": "federated.backends.backend",
    "Bulyan": "federated.strategies.bulyan",
    "CheckpointError": "federated.exceptions",
    "Client": "federated.client.client",
    "ClientEvaluation": "federated.messages",
    "ClientFailure": "federated.messages",
    "ClientRunner": "federated.client.runner",
    "ClientUpdate": "federated.messages",
    "EvaluateTask": "federated.messages",
    "FedAdagrad": "federated.strategies.fedadagrad",
    "FedAdam": "federated.strategies.fedadam",
    "FedAvg": "federated.strategies.fedavg",
    "FedAvgM": "federated.strategies.fedavgm",
    "FedMedian": "federated.strategies.fedmedian",
    "FedNova": "federated.strategies.fednova",
    "FedOpt": "federated.strategies.fedopt",
    "FedProx": "federated.strategies.fedprox",
    "FedTrimmedAvg": "federated.strategies.fedtrimmedavg",
    "FedYogi": "federated.strategies.fedyogi",
    "FitTask": "federated.messages",
    "FederatedTrainer": "federated.trainer",
    "FederationError": "federated.exceptions",
    "FederationResult": "federated.results",
    "Krum": "federated.strategies.krum",
    "MLP": "federated.models",
    "MultiKrum": "federated.strategies.multikrum",
    "NotEnoughClientsError": "federated.exceptions",
    "RayBackend": "federated.backends.ray_backend",
    "RoundProgress": "federated.progress",
    "RoundResult": "federated.results",
    "Scaffold": "federated.strategies.scaffold",
    "SequentialBackend": "federated.backends.sequential",
    "Strategy": "federated.strategies.strategy",
    "StrategyWrapper": "federated.strategies.wrapper",
    "digits_federation": "federated.data",
    "partition": "federated.data",
}
"""Public names and their modules, loaded on first access (PEP 562): ``import federated`` imports no torch."""

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
