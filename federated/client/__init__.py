"""The client side of a federation: a client's data and kept state, the runner that turns a task into
one Lightning fit or validate, the client trainer's defaults and checks, and the client algorithms
strategies name (FedProx's proximal term, SCAFFOLD's correction, FedNova's step count), and DP-SGD.

Backends import this package and :mod:`federated.messages`, never the round loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from callbacks.lazy import lazy_exports

if TYPE_CHECKING:
    from federated.client.algorithm import ClientAlgorithm as ClientAlgorithm
    from federated.client.client import Client as Client
    from federated.client.dp_sgd import PrivateTraining as PrivateTraining
    from federated.client.proximal import ProximalTerm as ProximalTerm
    from federated.client.runner import ClientRunner as ClientRunner
    from federated.client.scaffold import ControlVariate as ControlVariate
    from federated.client.step_count import StepCount as StepCount

__all__ = [
    "Client",
    "ClientAlgorithm",
    "ClientRunner",
    "ControlVariate",
    "PrivateTraining",
    "ProximalTerm",
    "StepCount",
]

_LAZY = {
    "Client": "federated.client.client",
    "ClientAlgorithm": "federated.client.algorithm",
    "ClientRunner": "federated.client.runner",
    "ControlVariate": "federated.client.scaffold",
    "PrivateTraining": "federated.client.dp_sgd",
    "ProximalTerm": "federated.client.proximal",
    "StepCount": "federated.client.step_count",
}
"""Public names and their modules, loaded on first access: ``federated.client.Client`` imports no Lightning."""

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
