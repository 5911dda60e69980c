"""Shared fixtures of the strategy tests: one intra-op thread, a small digits federation, update helpers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch.utils.data import DataLoader

from federated import digits_federation


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one intra-op thread is faster and steadier."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits5() -> tuple[list[DataLoader], DataLoader]:
    """Digits split IID over 5 clients (about 290 samples each), and the test loader."""
    return digits_federation(num_clients=5, partition="iid", batch_size=32, seed=0)
