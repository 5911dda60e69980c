"""How the server combines client updates: FedAvg and its relatives, as Flower's ``server/strategy``.

Importing this package registers every strategy under its YAML name (``fedavg``, ``fedprox``, ...).
The maths are pure functions in :mod:`~federated.strategies.aggregate` and
:mod:`~federated.strategies.server_opt` and :mod:`~federated.strategies.robust`; the classes only coordinate.
"""

from federated.strategies.buffered import BufferedStrategy as BufferedStrategy
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
from federated.strategies.server_step import ServerStep as ServerStep
from federated.strategies.strategy import Strategy as Strategy
from federated.strategies.wrapper import StrategyWrapper as StrategyWrapper

__all__ = [
    "BufferedStrategy",
    "Bulyan",
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
    "Krum",
    "MultiKrum",
    "Scaffold",
    "ServerStep",
    "Strategy",
    "StrategyWrapper",
]
