"""FedProx: FedAvg on the server, the proximal term as its client algorithm in every client fit."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import DataLoader

from federated import MLP, FederatedTrainer
from federated.client import ClientAlgorithm, ProximalTerm
from federated.strategies.fedavg import FedAvg
from federated.strategies.fedprox import FedProx


class CountFits(ClientAlgorithm):
    """Counts the fits it is part of."""

    name = "count_fits"

    def __init__(self) -> None:
        self.fits = 0

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.fits += 1


class CountingFedAvg(FedAvg):
    """FedAvg whose client algorithm counts the client fits."""

    def __init__(self) -> None:
        super().__init__()
        self.counter = CountFits()

    def client_algorithms(self) -> list[ClientAlgorithm]:
        return [self.counter]


def test_fedprox_runs_its_proximal_term_and_none_with_mu_zero() -> None:
    (term,) = FedProx(mu=0.3).client_algorithms()

    assert isinstance(term, ProximalTerm) and term.mu == 0.3
    assert FedProx(mu=0.0).client_algorithms() == []


def test_federated_trainer_runs_the_strategy_client_algorithms_in_every_client_fit(
    digits5: tuple[list[DataLoader], DataLoader],
) -> None:
    loaders, _ = digits5
    strategy = CountingFedAvg()
    fed = FederatedTrainer(MLP(hidden=8), loaders[:3], rounds=2, strategy=strategy, seed=0)

    fed.fit()

    assert strategy.counter.fits == 2 * 3


def test_fedprox_rejects_a_negative_mu() -> None:
    with pytest.raises(ValueError, match=r"`mu`: must be a number in \[0, inf\), got -0.1; 0 is FedAvg"):
        FedProx(mu=-0.1)


def test_fedprox_keeps_clients_closer_to_the_global_weights_than_fedavg(
    digits5: tuple[list[DataLoader], DataLoader],
) -> None:
    loaders, _ = digits5

    def spread(strategy: Any) -> float:
        torch.manual_seed(0)
        fed = FederatedTrainer(MLP(hidden=16, lr=0.3), loaders[:3], rounds=1, local_epochs=3, strategy=strategy, seed=0)
        start = {k: v.clone() for k, v in fed.global_weights.items()}
        fed.fit()
        return sum(float(((fed.global_weights[k] - start[k]) ** 2).sum()) for k in start)

    assert spread(FedProx(mu=1.0)) < 0.5 * spread(FedAvg())
