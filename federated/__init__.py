"""Federated learning on Lightning: the round loop, strategies, client data and the built-in model.

``FederatedTrainer`` runs one ``lightning.Trainer.fit`` per selected client per round and fires the
native callbacks' round, aggregate and learner hooks (``callbacks`` package).
"""

from federated.backends.backend import Backend as Backend
from federated.backends.client_runner import ClientRunner as ClientRunner
from federated.backends.ray_backend import RayBackend as RayBackend
from federated.backends.sequential import SequentialBackend as SequentialBackend
from federated.client import Client as Client
from federated.data import digits_federation as digits_federation
from federated.data import load_digits_data as load_digits_data
from federated.data import partition as partition
from federated.data import partition_dirichlet as partition_dirichlet
from federated.data import partition_iid as partition_iid
from federated.data import partition_shards as partition_shards
from federated.exceptions import CheckpointError as CheckpointError
from federated.exceptions import FederationError as FederationError
from federated.exceptions import NotEnoughClientsError as NotEnoughClientsError
from federated.models import MLP as MLP
from federated.results import ClientFailure as ClientFailure
from federated.results import ClientUpdate as ClientUpdate
from federated.results import FederationResult as FederationResult
from federated.results import RoundResult as RoundResult
from federated.strategies.aggregate import WeightedSum as WeightedSum
from federated.strategies.aggregate import weighted_average as weighted_average
from federated.strategies.aggregate import weighted_average_reference as weighted_average_reference
from federated.strategies.fedadagrad import FedAdagrad as FedAdagrad
from federated.strategies.fedadam import FedAdam as FedAdam
from federated.strategies.fedavg import FedAvg as FedAvg
from federated.strategies.fedavgm import FedAvgM as FedAvgM
from federated.strategies.fedmedian import FedMedian as FedMedian
from federated.strategies.fedopt import FedOpt as FedOpt
from federated.strategies.fedprox import FedProx as FedProx
from federated.strategies.fedtrimmedavg import FedTrimmedAvg as FedTrimmedAvg
from federated.strategies.fedyogi import FedYogi as FedYogi
from federated.strategies.strategy import Strategy as Strategy
from federated.trainer import FederatedTrainer as FederatedTrainer

__all__ = [
    "MLP",
    "Backend",
    "CheckpointError",
    "Client",
    "ClientFailure",
    "ClientRunner",
    "ClientUpdate",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedMedian",
    "FedOpt",
    "FedProx",
    "FedTrimmedAvg",
    "FedYogi",
    "FederatedTrainer",
    "FederationError",
    "FederationResult",
    "NotEnoughClientsError",
    "RayBackend",
    "RoundResult",
    "SequentialBackend",
    "Strategy",
    "WeightedSum",
    "digits_federation",
    "load_digits_data",
    "partition",
    "partition_dirichlet",
    "partition_iid",
    "partition_shards",
    "weighted_average",
    "weighted_average_reference",
]
