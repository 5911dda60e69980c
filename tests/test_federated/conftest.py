"""Shared fixtures of the federated tests: small digits federations and a seeded model factory."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch.utils.data import DataLoader

from federated import MLP, digits_federation


@pytest.fixture(scope="session")
def digits4() -> tuple[list[DataLoader], DataLoader]:
    """Digits split IID over 4 clients (about 360 samples each), and the test loader."""
    return digits_federation(num_clients=4, partition="iid", batch_size=64, seed=0)


@pytest.fixture
def make_model() -> Callable[..., MLP]:
    """Build an MLP with seeded initial weights (the same for the same ``seed``)."""

    def make(seed: int = 0, **kwargs: object) -> MLP:
        torch.manual_seed(seed)
        return MLP(**{"hidden": 16, **kwargs})  # type: ignore[arg-type]

    return make
