"""Clients that raise or diverge are recorded and left out; below `min_clients` the round fails."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from federated import MLP, ClientFailure, FederatedTrainer, NotEnoughClientsError


def raising_loader() -> DataLoader:
    """A client whose labels are out of range: cross_entropy raises inside its fit."""
    return DataLoader(TensorDataset(torch.rand(8, 64), torch.full((8,), 99)), batch_size=4)


def nan_loader() -> DataLoader:
    """A client whose features are NaN: its fit ends with NaN weights."""
    return DataLoader(TensorDataset(torch.full((8, 64), float("nan")), torch.zeros(8, dtype=torch.long)), batch_size=4)


def test_failing_and_nan_clients_are_recorded_and_left_out(
    digits4: Any, make_model: Callable[..., MLP], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: clients 0 and 1 healthy, 2 raises, 3 diverges
    loaders, test = digits4
    fed = FederatedTrainer(
        make_model(), [loaders[0], loaders[1], raising_loader(), nan_loader()], test, rounds=2, min_clients=2
    )
    # Execute
    with caplog.at_level(logging.WARNING, logger="federated"):
        result = fed.fit()
    # Assert
    assert result.rounds == 2
    for round_result in result.history:
        assert [u.client_id for u in round_result.updates] == [0, 1]
        failures = {f.client_id: f for f in round_result.failures}
        assert sorted(failures) == [2, 3]
        assert isinstance(failures[2], ClientFailure) and failures[2].error.startswith(("IndexError", "RuntimeError"))
        assert "Traceback" in failures[2].traceback
        assert failures[3].error.startswith("non-finite weights in round")
    assert all(torch.isfinite(t).all() for t in result.weights.values())
    assert "client 3 left out: non-finite weights" in caplog.text


def test_below_min_clients_fails_with_a_clear_error(digits4: Any, make_model: Callable[..., MLP]) -> None:
    loaders, test = digits4
    fed = FederatedTrainer(make_model(), [loaders[0], raising_loader(), nan_loader()], test, rounds=3, min_clients=2)
    with pytest.raises(NotEnoughClientsError) as info:
        fed.fit()
    message = str(info.value)
    assert message.startswith("round 1: 1 of 3 selected clients succeeded, fewer than `min_clients=2`")
    assert "client 1: " in message and "client 2: non-finite weights" in message
