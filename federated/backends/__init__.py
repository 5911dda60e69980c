"""Where a round's client fits run: in this process one after the other, on a pool of Ray actors, or on
Flower SuperNodes.

Importing this package registers the backends under their YAML names (``sequential``, ``ray``,
``flower``); the Ray and Flower backends import their extras only when they are built.
"""

from federated.backends.backend import Backend as Backend
from federated.backends.backend import FitSetup as FitSetup
from federated.backends.flower_backend import FlowerBackend as FlowerBackend
from federated.backends.ray_backend import RayBackend as RayBackend
from federated.backends.sequential import SequentialBackend as SequentialBackend

__all__ = ["Backend", "FitSetup", "FlowerBackend", "RayBackend", "SequentialBackend"]
