"""The client algorithms a federation config adds to its strategy's: DP-SGD, from ``clients.dp_sgd``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from federated.client.algorithm import ClientAlgorithm

__all__ = ["build_client_algorithms"]


def build_client_algorithms(config: Mapping[str, Any]) -> list[ClientAlgorithm]:
    """The client algorithms of a checked ``config`` beyond its strategy's: DP-SGD when ``clients.dp_sgd`` is on.

    The server builds them for ``FederatedTrainer(client_algorithms=...)``, and each Flower SuperNode
    for its own runner, from the same config.
    """
    section = config["clients"]["dp_sgd"]
    if section["noise_multiplier"] is None:
        return []
    from federated.client.dp_sgd import PrivateTraining  # Opacus loads only when DP-SGD is on

    return [PrivateTraining(**section)]
