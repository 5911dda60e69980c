"""Shared fixtures of the strategy tests: one intra-op thread, a small digits federation, update helpers."""

from __future__ import annotations

import pytest
from torch.utils.data import DataLoader

from federated import digits_federation


@pytest.fixture(scope="session")
def digits5() -> tuple[list[DataLoader], DataLoader]:
    """Digits split IID over 5 clients (about 290 samples each), and the test loader."""
    return digits_federation(num_clients=5, partition="iid", batch_size=32, seed=0)


@pytest.fixture(scope="session")
def digits11() -> tuple[list[DataLoader], DataLoader]:
    """Digits split IID over 11 clients (about 130 samples each), and the test loader: Bulyan with f=2 needs 11."""
    return digits_federation(num_clients=11, partition="iid", batch_size=32, seed=0)
