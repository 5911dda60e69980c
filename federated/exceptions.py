"""Errors of the federated round loop, under the project's ``BridgeError``.

The tree::

    BridgeError
    └── FederationError          the federation cannot go on
        ├── NotEnoughClientsError  fewer successful clients in a round than `min_clients`
        └── CheckpointError        a federation checkpoint cannot be used
"""

from __future__ import annotations

from callbacks import BridgeError

__all__ = ["CheckpointError", "FederationError", "NotEnoughClientsError"]


class FederationError(BridgeError, RuntimeError):
    """The federation cannot go on."""


class NotEnoughClientsError(FederationError):
    """A round ended with fewer successful clients than ``min_clients``; the message lists the failures."""


class CheckpointError(FederationError):
    """A federation checkpoint is missing, of another format, or does not fit this run."""
