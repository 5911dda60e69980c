"""Errors of the federated round loop, under the project's ``BridgeError``.

The tree::

    BridgeError
    └── FederationError          the federation cannot go on
        ├── NotEnoughClientsError  fewer successful clients in a round than `min_clients`
        └── CheckpointError        a federation checkpoint cannot be used
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from callbacks import BridgeError

__all__ = ["CheckpointError", "FederationError", "NotEnoughClientsError"]


class FederationError(BridgeError, RuntimeError):
    """The federation cannot go on."""


class NotEnoughClientsError(FederationError):
    """A round ended with fewer successful clients than ``min_clients``; the message lists the failures.

    Args:
        round_num: The round.
        selected: How many clients the round selected.
        failures: The round's ``ClientFailure``s (a ``client_id`` and an ``error`` each).
        minimum: ``min_clients``.

    Example:
        >>> class Failure:
        ...     client_id, error = 3, "boom"
        >>> str(NotEnoughClientsError(1, 1, [Failure()], 1))
        'round 1: 0 of 1 selected clients succeeded, fewer than `min_clients=1`; failures: client 3: boom'
    """

    def __init__(self, round_num: int, selected: int, failures: Sequence[Any], minimum: int) -> None:
        details = "; ".join(f"client {f.client_id}: {f.error}" for f in failures[:5])
        more = f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
        super().__init__(
            f"round {round_num}: {selected - len(failures)} of {selected} selected clients succeeded, fewer than "
            f"`min_clients={minimum}`; failures: {details}{more}"
        )


class CheckpointError(FederationError):
    """A federation checkpoint is missing, of another format, or does not fit this run."""
