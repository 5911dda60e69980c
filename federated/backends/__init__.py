"""Where a round's client fits run: in this process one after the other, or on a pool of Ray actors.

Importing this package registers the backends under their YAML names (``sequential``, ``ray``);
the Ray backend imports Ray only when it starts.
"""

from federated.backends.backend import Backend as Backend
from federated.backends.backend import FitSetup as FitSetup
from federated.backends.client_runner import ClientRunner as ClientRunner
from federated.backends.ray_backend import RayBackend as RayBackend
from federated.backends.sequential import SequentialBackend as SequentialBackend

__all__ = ["Backend", "ClientRunner", "FitSetup", "RayBackend", "SequentialBackend"]
