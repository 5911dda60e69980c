"""The DP wrappers in real federations: the noise's size, the account against dp-accounting, the budget, a resume."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from callbacks import PrivacyBudget
from federated import FederatedTrainer
from federated.messages import ClientUpdate
from federated.privacy import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    PrivacyAccount,
    UpdateClipping,
)
from federated.strategies import FedAvg
from tests.test_strategies.strategy_helpers import client_tensors, loaders, model

pytest.importorskip("dp_accounting")

WRAPPERS = {
    "server_fixed": lambda delta=None: DifferentialPrivacyServerSideFixedClipping(
        FedAvg(weighted=False), 1.5, 2.0, delta=delta
    ),
    "client_fixed": lambda delta=None: DifferentialPrivacyClientSideFixedClipping(
        FedAvg(weighted=False), 1.5, 2.0, delta=delta
    ),
    "server_adaptive": lambda delta=None: DifferentialPrivacyServerSideAdaptiveClipping(
        FedAvg(weighted=False), 1.5, initial_clipping_norm=2.0, clipped_count_stddev=1.0, delta=delta
    ),
    "client_adaptive": lambda delta=None: DifferentialPrivacyClientSideAdaptiveClipping(
        FedAvg(weighted=False), 1.5, initial_clipping_norm=2.0, clipped_count_stddev=1.0, delta=delta
    ),
}
"""Each wrapper around the unweighted mean: noise multiplier 1.5, clipping norm 2 (the initial one, if adaptive)."""


def reference_epsilon(noise_multiplier: float, num_clients: int, per_round: int, rounds: int, delta: float) -> float:
    """dp-accounting's own RDP accountant, composed round by round, for the sampler's event."""
    from dp_accounting import dp_event, privacy_accountant, rdp

    accountant = rdp.RdpAccountant(neighboring_relation=privacy_accountant.NeighboringRelation.REPLACE_ONE)
    gaussian = dp_event.GaussianDpEvent(noise_multiplier / 2)
    event = dp_event.SampledWithoutReplacementDpEvent(num_clients, per_round, gaussian)
    for _ in range(rounds):
        accountant.compose(event)
    return float(accountant.get_epsilon(delta))


@pytest.mark.parametrize("name", list(WRAPPERS))
def test_noise_has_the_documented_standard_deviation(name: str) -> None:
    # Prepare: 4 clients whose updates are all zero, 50,000 coordinates; the aggregate is then pure noise
    wrapper = WRAPPERS[name]()
    wrapper.begin_federation(num_clients=8, clients_per_round=4)
    start = {"w": torch.zeros(50_000)}
    torch.manual_seed(0)

    # Execute
    wrapper.begin_round(1, start)
    for client_id in range(4):
        payload = {UpdateClipping.name: {"clipped": False}} if wrapper.client_side else {}
        wrapper.accumulate(ClientUpdate(client_id=client_id, num_samples=1, weights=dict(start), payload=payload))
    noise = wrapper.finish_round()["w"]

    # Assert: noise_multiplier * clipping_norm / num_sampled_clients, the adaptive ones' share of the multiplier
    multiplier = (1.5**-2 - (2 * 1.0) ** -2) ** -0.5 if "adaptive" in name else 1.5
    assert wrapper.update_noise_multiplier == pytest.approx(multiplier)
    assert float(noise.std()) == pytest.approx(multiplier * 2.0 / 4, rel=0.03)
    assert abs(float(noise.mean())) < 0.02


def test_account_equals_dp_accounting_and_grows_every_round() -> None:
    account = PrivacyAccount(noise_multiplier=1.2, num_clients=20, clients_per_round=5, delta=1e-4)

    epsilons = [account.epsilon(rounds) for rounds in range(1, 6)]

    for rounds, epsilon in enumerate(epsilons, start=1):
        assert epsilon == pytest.approx(reference_epsilon(1.2, 20, 5, rounds, 1e-4), abs=1e-6)
    assert all(a < b for a, b in itertools.pairwise(epsilons))


def federation(strategy: Any, rounds: int, callbacks: tuple[Any, ...] = (), **kwargs: Any) -> FederatedTrainer:
    """5 small clients of a linear classifier, 2 per round."""
    return FederatedTrainer(
        model(), loaders(client_tensors(5)), rounds=rounds, clients_per_round=2, strategy=strategy,
        callbacks=list(callbacks), seed=0, on_error="raise", **kwargs,
    )


def test_rounds_report_the_account_and_the_budget_stops_before_passing_it() -> None:
    # Prepare: a budget between the account after round 2 and after round 3
    after = [reference_epsilon(1.0, 5, 2, rounds, 1e-3) for rounds in (1, 2, 3)]
    budget = PrivacyBudget(max_epsilon=(after[1] + after[2]) / 2)
    strategy = DifferentialPrivacyServerSideFixedClipping(FedAvg(weighted=False), 1.0, 1.0, delta=1e-3)

    # Execute
    result = federation(strategy, rounds=6, callbacks=(budget,)).fit()

    # Assert: two rounds, each with its epsilon and the next round's; stopped with the reason
    assert [r.metrics["privacy/epsilon"] for r in result.history] == pytest.approx(after[:2], abs=1e-6)
    assert [r.metrics["privacy/epsilon_next"] for r in result.history] == pytest.approx(after[1:], abs=1e-6)
    assert result.stopped_early and budget.stopped_at == ("round", 2)
    assert budget.stop_reason == f"stopped at round 2: epsilon {after[1]:.3g} of {budget.max_epsilon:g}"


def test_budget_already_spent_by_the_first_round_is_refused_at_build() -> None:
    strategy = DifferentialPrivacyServerSideFixedClipping(FedAvg(weighted=False), 1.0, 1.0, delta=1e-3)

    with pytest.raises(Exception, match=r"`callbacks\[0\]\.max_epsilon`: is 0\.1, and the first round alone spends"):
        federation(strategy, rounds=2, callbacks=(PrivacyBudget(max_epsilon=0.1),))


@pytest.mark.parametrize("name", ["server_fixed", "client_adaptive"])
def test_resumed_run_gives_the_uninterrupted_runs_weights_norm_and_account(name: str, tmp_path: Path) -> None:
    # Prepare
    whole = federation(WRAPPERS[name](delta=1e-3), rounds=3)
    whole.fit()
    first = federation(WRAPPERS[name](delta=1e-3), rounds=2, checkpoint_dir=tmp_path)
    first.fit()

    # Execute
    second = federation(WRAPPERS[name](delta=1e-3), rounds=3, checkpoint_dir=tmp_path)
    second.fit(resume_from="auto")

    # Assert: bit for bit, the noise included; the same norm and rounds accounted
    for key, value in whole.global_weights.items():
        assert torch.equal(second.global_weights[key], value), key
    assert second.strategy.clipping_norm == whole.strategy.clipping_norm
    assert second.strategy.account.rounds == whole.strategy.account.rounds == 3
    assert second.history[-1].metrics == whole.history[-1].metrics


class Failing(Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> Any:
        raise RuntimeError("this client's disk is gone")


def test_round_short_of_its_sampled_clients_keeps_the_weights_and_spends_nothing(caplog) -> None:
    # Prepare: 2 clients, both sampled; one cannot train
    data = [*loaders(client_tensors(1)), DataLoader(Failing(), batch_size=4)]
    strategy = DifferentialPrivacyServerSideFixedClipping(FedAvg(weighted=False), 1.0, 1.0, delta=1e-3)
    fed = FederatedTrainer(model(), data, rounds=1, clients_per_round=2, strategy=strategy, seed=0)
    start = {k: v.clone() for k, v in fed.global_weights.items()}

    # Execute
    with caplog.at_level(logging.WARNING, logger="federated.privacy"):
        result = fed.fit()

    # Assert
    assert len(result.history[0].failures) == 1
    assert all(torch.equal(result.weights[k], v) for k, v in start.items())
    assert strategy.account is not None and strategy.account.rounds == 0
    assert result.history[0].metrics["privacy/epsilon"] == 0.0
    assert "1 of the 2 sampled clients' updates arrived" in caplog.text


def test_run_stopped_by_its_budget_does_not_train_on_when_resumed(tmp_path: Path) -> None:
    # Prepare: a run its budget stopped after round 2 of 6
    def run() -> tuple[FederatedTrainer, PrivacyBudget]:
        strategy = DifferentialPrivacyServerSideFixedClipping(FedAvg(weighted=False), 1.0, 1.0, delta=1e-3)
        budget = PrivacyBudget(max_epsilon=reference_epsilon(1.0, 5, 2, 2, 1e-3) + 1e-3)
        return federation(strategy, rounds=6, callbacks=(budget,), checkpoint_dir=tmp_path), budget

    first, _ = run()
    first.fit()

    # Execute
    resumed, budget = run()
    result = resumed.fit(resume_from="auto")

    # Assert: no round more; the account and the reason as they were
    assert [r.round_num for r in result.history] == [1, 2] and result.stopped_early
    assert resumed.strategy.account.rounds == 2
    assert budget.stop_reason is not None and budget.stop_reason.startswith("stopped at round 2: epsilon")
