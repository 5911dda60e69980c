"""DP-SGD in every client fit: each client's own privacy account, kept, checkpointed and resumed exactly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Subset

from callbacks import ArgumentError
from federated import MLP, FederatedTrainer, Scaffold
from federated.client import PrivateTraining
from lightning_bridge.dp_sgd import epsilon_of


def dp_sgd() -> PrivateTraining:
    return PrivateTraining(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5)


def uneven(digits4: Any) -> list[DataLoader]:
    """Two clients: one of about 360 digits (6 batches of 64), one of 100 (2 batches)."""
    big = digits4[0][0]
    small = DataLoader(Subset(digits4[0][1].dataset, range(100)), batch_size=64, shuffle=True)
    return [big, small]


def test_each_client_keeps_its_own_account_and_the_round_reports_the_largest_epsilon(
    digits4: Any, make_model: Callable[..., MLP]
) -> None:
    # Prepare
    fed = FederatedTrainer(make_model(), uneven(digits4), rounds=2, client_algorithms=[dp_sgd()], seed=0)
    # Execute
    result = fed.fit()
    # Assert: two fits each, at each client's own sampling rate
    big, small = (fed.clients[i].algorithm_states["dp_sgd"]["history"] for i in (0, 1))
    assert big == [[1.0, 1 / 6, 12]] and small == [[1.0, 1 / 2, 4]]
    last = {u.client_id: u.metrics["dp/epsilon"] for u in result.history[-1].updates}
    assert last[0] == pytest.approx(epsilon_of([(1.0, 1 / 6, 12)], 1e-5), abs=1e-5)
    assert last[1] == pytest.approx(epsilon_of([(1.0, 1 / 2, 4)], 1e-5), abs=1e-5)
    assert last[0] != pytest.approx(last[1])
    assert result.history[-1].metrics["dp/epsilon"] == max(last.values())  # not the sample-weighted mean


def test_dp_sgd_accounts_are_exact_across_a_kill_and_resume(
    digits4: Any, make_model: Callable[..., MLP], tmp_path: Path
) -> None:
    loaders = uneven(digits4)

    def federation(rounds: int, checkpoint_dir: Path | None = None) -> FederatedTrainer:
        return FederatedTrainer(
            make_model(), loaders, rounds=rounds, client_algorithms=[dp_sgd()], checkpoint_dir=checkpoint_dir, seed=3
        )

    straight_fed = federation(2)
    straight = straight_fed.fit()
    federation(1, tmp_path).fit()  # the process "dies" after round 1: only its checkpoint is left
    resumed_fed = federation(2, tmp_path)
    resumed = resumed_fed.fit(resume_from="auto")

    assert all(torch.equal(resumed.weights[k], straight.weights[k]) for k in straight.weights)
    assert [r.metrics for r in resumed.history] == [r.metrics for r in straight.history]
    assert [c.state_dict() for c in resumed_fed.clients] == [c.state_dict() for c in straight_fed.clients]
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert checkpoint["clients"][1]["algorithms"]["dp_sgd"] == {"history": [[1.0, 0.5, 4]]}


def test_dp_sgd_noise_is_the_task_seeds(digits4: Any, make_model: Callable[..., MLP]) -> None:
    def weights(seed: int) -> dict[str, torch.Tensor]:
        fed = FederatedTrainer(make_model(), uneven(digits4), rounds=1, client_algorithms=[dp_sgd()], seed=seed)
        return fed.fit().weights

    first, again, other = weights(0), weights(0), weights(1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["net.0.weight"], other["net.0.weight"])


def test_dp_sgd_cannot_run_with_scaffolds_gradient_correction(digits4: Any, make_model: Callable[..., MLP]) -> None:
    with pytest.raises(ValueError, match="client algorithm 'dp_sgd' cannot run in the same fit as 'scaffold'"):
        FederatedTrainer(make_model(), uneven(digits4), strategy=Scaffold(), client_algorithms=[dp_sgd()])


def test_dp_sgd_refuses_a_batch_norm_model_when_the_federation_is_built(
    digits4: Any, make_model: Callable[..., MLP]
) -> None:
    with pytest.raises(ArgumentError, match=r"^`model`: its layer `net.bn` \(_BatchNorm1d\) cannot train with DP-SGD"):
        FederatedTrainer(make_model(batch_norm=True), uneven(digits4), client_algorithms=[dp_sgd()])
