"""Shared fixtures of the federated tests: small digits federations and a seeded model factory.

It also makes ``federated_helpers`` importable from the tests of this folder (pytest runs in importlib mode).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from federated import MLP, digits_federation

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


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
