"""Each strategy, built from its YAML entry, learns digits in a short federation (5 IID clients, 4 rounds)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

from callbacks import build
from federated import MLP, FederatedTrainer

ENTRIES: list[dict[str, Any]] = [
    {"type": "fedprox", "args": {"mu": 0.01}},
    {"type": "fedadam", "args": {}},
    {"type": "fedyogi", "args": {"eta": 0.03}},
    {"type": "fedadagrad", "args": {}},
    {"type": "fedavgm", "args": {"server_learning_rate": 1.0, "server_momentum": 0.5}},
    {"type": "fedmedian"},
    {"type": "fedtrimmedavg", "args": {"beta": 0.2}},
    {"type": "scaffold", "args": {"eta_g": 1.0}},
    {"type": "fednova", "args": {}},
]


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["type"] for e in ENTRIES])
def test_strategy_learns_digits(entry: dict[str, Any], digits5: tuple[list[DataLoader], DataLoader]) -> None:
    # Prepare
    loaders, test = digits5
    strategy = build("strategy", entry, "strategy")
    torch.manual_seed(0)
    fed = FederatedTrainer(MLP(hidden=32, lr=0.3), loaders, test, rounds=4, strategy=strategy, seed=0)

    # Execute
    result = fed.fit()

    # Assert: chance is 0.1; every strategy reaches 0.76-0.88 here (seed 0)
    accuracy = [r.metrics["accuracy"] for r in result.history]
    assert not any(r.failures for r in result.history)
    assert accuracy[-1] >= 0.6, accuracy
