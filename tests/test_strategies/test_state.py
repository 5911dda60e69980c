"""Strategy state survives a checkpoint: saved mid-run and loaded with ``weights_only=True``, the next rounds agree."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
import torch
from torch.utils.data import DataLoader

from federated import MLP, ClientUpdate, FederatedTrainer
from federated.strategies.fedadagrad import FedAdagrad
from federated.strategies.fedadam import FedAdam
from federated.strategies.fedavgm import FedAvgM
from federated.strategies.fedmedian import FedMedian
from federated.strategies.fedprox import FedProx
from federated.strategies.fedtrimmedavg import FedTrimmedAvg
from federated.strategies.fedyogi import FedYogi
from federated.strategies.strategy import Strategy

STRATEGIES: dict[str, Callable[[], Strategy]] = {
    "fedprox": lambda: FedProx(mu=0.1),
    "fedadam": lambda: FedAdam(eta=0.05, tau=1e-3),
    "fedyogi": lambda: FedYogi(eta=0.05),
    "fedadagrad": lambda: FedAdagrad(eta=0.05, beta_1=0.5, tau=1e-3),
    "fedavgm": lambda: FedAvgM(server_learning_rate=0.7, server_momentum=0.9),
    "fedmedian": FedMedian,
    "fedtrimmedavg": lambda: FedTrimmedAvg(beta=0.25),
}


def _round(strategy: Strategy, round_num: int, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A round of four clients, each at ``weights`` plus seeded noise."""
    generator = torch.Generator().manual_seed(round_num)
    strategy.begin_round(round_num, weights)
    for client_id in range(4):
        moved = {
            "w": weights["w"] + torch.randn(weights["w"].shape, generator=generator),
            "n": weights["n"] + client_id,
        }
        strategy.accumulate(ClientUpdate(client_id=client_id, num_samples=client_id + 1, weights=moved))
    return strategy.finish_round()


def _through_checkpoint(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save({"strategy": state}, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)["strategy"]


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_strategy_state_round_trip_gives_the_same_next_rounds(name: str) -> None:
    # Prepare: two rounds, then a copy restored from the saved state
    weights = {"w": torch.zeros(3, 2), "n": torch.tensor(0)}
    original = STRATEGIES[name]()
    for round_num in (1, 2):
        weights = _round(original, round_num, weights)
    restored = STRATEGIES[name]()
    restored.load_state_dict(_through_checkpoint(original.state_dict()))

    # Execute: rounds 3 and 4 on both
    ahead, resumed = weights, weights
    for round_num in (3, 4):
        ahead = _round(original, round_num, ahead)
        resumed = _round(restored, round_num, resumed)

    # Assert
    assert ahead.keys() == resumed.keys()
    for key in ahead:
        assert torch.equal(ahead[key], resumed[key]), key


def test_state_dict_is_a_copy() -> None:
    fedadam = FedAdam()
    _round(fedadam, 1, {"w": torch.zeros(3, 2), "n": torch.tensor(0)})

    saved = fedadam.state_dict()
    saved["m"]["w"].add_(1.0)

    assert not torch.equal(saved["m"]["w"], fedadam.m["w"])


def test_fedadam_federation_resumes_exactly(tmp_path, digits5: tuple[list[DataLoader], DataLoader]) -> None:
    # Prepare: three rounds in one go, and two rounds then a resume to three (checkpoint in between)
    loaders = digits5[0][:3]

    def federation(rounds: int) -> FederatedTrainer:
        torch.manual_seed(0)
        return FederatedTrainer(
            MLP(hidden=8), loaders, rounds=rounds, strategy=FedAdam(eta=0.01, tau=1e-3), seed=0,
            checkpoint_dir=tmp_path,
        )  # fmt: skip

    # Execute
    federation(2).fit()
    resumed = federation(3).fit(resume_from="auto")
    uninterrupted = federation(3).fit()

    # Assert: the moments came back with the checkpoint, so round 3 takes the same step
    for key, tensor in uninterrupted.weights.items():
        assert torch.equal(tensor, resumed.weights[key]), key
