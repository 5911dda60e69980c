"""SCAFFOLD against a hand-written loop of the paper's algorithm (option II), and its control variates."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from federated import FederatedTrainer, Scaffold
from tests.test_strategies.strategy_helpers import LR, batches, client_tensors, loaders, loss_grads, model


def reference_scaffold(
    start: dict[str, torch.Tensor], data: list[Any], selected: list[list[int]], epochs: int, eta_g: float
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Karimireddy et al. (2020), Algorithm 1 with option II, on the rounds' selected clients in order."""
    x = {k: v.clone() for k, v in start.items()}
    zero = {k: torch.zeros_like(v) for k, v in x.items()}
    c = dict(zero)
    c_i = [dict(zero) for _ in data]
    for clients in selected:
        dys, dcs = [], []
        for i in clients:
            y, steps = {k: v.clone() for k, v in x.items()}, 0
            for _ in range(epochs):
                for bx, by in batches(*data[i]):
                    g = loss_grads(y, bx, by)
                    y = {k: y[k] - LR * (g[k] + c[k] - c_i[i][k]) for k in y}
                    steps += 1
            new = {k: c_i[i][k] - c[k] + (x[k] - y[k]) / (steps * LR) for k in x}
            dys.append({k: y[k] - x[k] for k in x})
            dcs.append({k: new[k] - c_i[i][k] for k in x})
            c_i[i] = new
        x = {k: x[k] + eta_g * sum(d[k] for d in dys) / len(dys) for k in x}
        c = {k: c[k] + sum(d[k] for d in dcs) / len(data) for k in c}
    return x, c, c_i


def test_scaffold_equals_the_papers_algorithm_by_hand() -> None:
    # Prepare: 4 drifting clients, 2 sampled per round, 2 local epochs of 3 steps, server learning rate 0.7
    data = client_tensors(4)
    fed = FederatedTrainer(
        model(), loaders(data), rounds=3, clients_per_round=2, local_epochs=2, strategy=Scaffold(eta_g=0.7),
        seed=0, on_error="raise",
    )
    start = {k: v.clone() for k, v in fed.global_weights.items()}

    # Execute
    result = fed.fit()

    # Assert: weights, the server's variate and every client's own, after 3 rounds
    x, c, c_i = reference_scaffold(start, data, [r.selected for r in result.history], epochs=2, eta_g=0.7)
    for name in x:
        torch.testing.assert_close(result.weights[name], x[name], atol=1e-6, rtol=0)
        torch.testing.assert_close(fed.strategy.c[name], c[name], atol=1e-6, rtol=0)
    for client in fed.clients:
        kept = client.algorithm_states.get("scaffold", {}).get("c_i", {})
        for name in x:
            torch.testing.assert_close(kept.get(name, torch.zeros_like(x[name])), c_i[client.client_id][name],
                                       atol=1e-6, rtol=0)
    assert any(not torch.equal(c[name], torch.zeros_like(c[name])) for name in c)


def test_scaffold_without_its_client_delta_says_what_is_missing() -> None:
    from federated import ClientUpdate

    scaffold = Scaffold()
    scaffold.begin_federation(2, 2)
    scaffold.begin_round(1, {"w": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"client 3 has no `scaffold.delta_c` in its payload: SCAFFOLD's clients"):
        scaffold.accumulate(ClientUpdate(3, 10, {"w": torch.ones(1)}))


def test_scaffold_rejects_a_server_learning_rate_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match=r"`eta_g`: must be a number in \(0, inf\), got 0"):
        Scaffold(eta_g=0)
