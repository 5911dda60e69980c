"""FedNova against a hand-written reference (Wang et al., 2020), and FedAvg when every client takes as many steps."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from federated import ClientUpdate, FedAvg, FederatedTrainer, FedNova
from tests.test_strategies.strategy_helpers import LR, batches, client_tensors, loaders, loss_grads, model


def reference_fednova(start: dict[str, torch.Tensor], data: list[Any], epochs: int, rounds: int) -> dict[str, Any]:
    """Every client each round: plain local SGD, then ``x - tau_eff * sum_i p_i (x - y_i) / tau_i``."""
    x = {k: v.clone() for k, v in start.items()}
    total = sum(len(features) for features, _ in data)
    for _ in range(rounds):
        step = {k: torch.zeros_like(v) for k, v in x.items()}
        tau_eff = 0.0
        for features, labels in data:
            y, tau = {k: v.clone() for k, v in x.items()}, 0
            for _ in range(epochs):
                for bx, by in batches(features, labels):
                    g = loss_grads(y, bx, by)
                    y = {k: y[k] - LR * g[k] for k in y}
                    tau += 1
            p = len(features) / total
            tau_eff += p * tau
            step = {k: step[k] + p * (x[k] - y[k]) / tau for k in x}
        x = {k: x[k] - tau_eff * step[k] for k in x}
    return x


def test_fednova_equals_the_papers_update_by_hand() -> None:
    # Prepare: clients of 8, 24, 40 and 16 samples: 1, 3, 5 and 2 local steps per epoch
    data = client_tensors(4, sizes=[8, 24, 40, 16])
    fed = FederatedTrainer(model(), loaders(data), rounds=3, local_epochs=2, strategy=FedNova(), seed=0,
                           on_error="raise")
    start = {k: v.clone() for k, v in fed.global_weights.items()}

    # Execute
    result = fed.fit()

    # Assert
    expected = reference_fednova(start, data, epochs=2, rounds=3)
    for name, tensor in expected.items():
        torch.testing.assert_close(result.weights[name], tensor, atol=1e-6, rtol=0)


def test_fednova_with_equal_local_steps_is_fedavg() -> None:
    data = client_tensors(3, sizes=[24, 24, 24])

    def final(strategy: Any) -> dict[str, torch.Tensor]:
        return FederatedTrainer(model(), loaders(data), rounds=2, strategy=strategy, seed=0).fit().weights

    nova, avg = final(FedNova()), final(FedAvg())
    for name, tensor in avg.items():
        torch.testing.assert_close(nova[name], tensor, atol=1e-6, rtol=0)


def test_fednova_momentum_normaliser_is_the_papers() -> None:
    # ||a||_1 for SGD with momentum rho over tau steps: sum_k (1 - rho^k) / (1 - rho), k = 1..tau
    rho, tau = 0.9, 5
    assert FedNova(momentum=rho).normaliser(tau) == pytest.approx(sum((1 - rho**k) / (1 - rho) for k in range(1, 6)))
    assert FedNova().normaliser(tau) == 5.0


def test_fednova_without_a_step_count_says_what_is_missing() -> None:
    fednova = FedNova()
    fednova.begin_round(1, {"w": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"client 2 needs weights and a step count >= 1 under `fednova.steps`"):
        fednova.accumulate(ClientUpdate(2, 10, {"w": torch.ones(1)}))
