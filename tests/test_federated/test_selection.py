"""Seeded client sampling that honours `trainer.client_selection_weights`."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from callbacks import Callback
from federated import MLP, FederatedTrainer


class PreferClients(Callback):
    """Seed 003's adaptive selection, reduced: weights for some clients at each round start."""

    def __init__(self, weights: dict[int, float]) -> None:
        self.weights = weights

    async def on_round_start(self, trainer, round_num, **kwargs) -> None:
        trainer.client_selection_weights = dict(self.weights)


class AdaptiveClientSelection(Callback):
    """Seed 003's example: explore at random sometimes, else favour the clients seen so far."""

    def __init__(self, exploration_rate: float = 0.5) -> None:
        self.exploration_rate = exploration_rate
        self.client_scores: dict[int, float] = {}

    async def on_round_end(self, trainer, round_num, result, **kwargs) -> None:
        for update in result.updates:
            self.client_scores[update.client_id] = update.metrics.get("train_loss", 0.0)

    async def on_round_start(self, trainer, round_num, **kwargs) -> None:
        if random.random() > self.exploration_rate and self.client_scores:
            trainer.client_selection_weights = {c: 1.0 / (1e-3 + s) for c, s in self.client_scores.items()}


def selected(fed: FederatedTrainer) -> list[list[int]]:
    return [r.selected for r in fed.fit().history]


def test_selection_weights_are_honoured(digits4: Any, make_model: Callable[..., MLP]) -> None:
    loaders, _ = digits4
    fed = FederatedTrainer(
        make_model(), loaders, rounds=3, clients_per_round=2, callbacks=[PreferClients({1: 1.0, 3: 5.0})]
    )
    assert selected(fed) == [[1, 3]] * 3


def test_selection_with_fewer_weighted_clients_than_slots(
    digits4: Any, make_model: Callable[..., MLP], caplog: pytest.LogCaptureFixture
) -> None:
    loaders, _ = digits4
    fed = FederatedTrainer(make_model(), loaders, rounds=1, clients_per_round=3, callbacks=[PreferClients({2: 1.0})])
    assert selected(fed) == [[2]]
    assert "gives 1 client(s) a positive weight" in caplog.text


def test_sampling_is_seeded_and_adaptive_selection_runs(digits4: Any, make_model: Callable[..., MLP]) -> None:
    loaders, _ = digits4

    def run(seed: int) -> list[list[int]]:
        fed = FederatedTrainer(
            make_model(), loaders, rounds=4, clients_per_round=2, seed=seed,
            callbacks=[AdaptiveClientSelection()], on_error="raise",
        )
        return selected(fed)

    first = run(seed=5)
    assert first == run(seed=5)
    assert all(len(s) == 2 and len(set(s)) == 2 for s in first)


def test_bad_selection_weights_fail_the_run(digits4: Any, make_model: Callable[..., MLP]) -> None:
    loaders, _ = digits4
    fed = FederatedTrainer(make_model(), loaders, rounds=1, clients_per_round=2, callbacks=[PreferClients({7: 1.0})])
    with pytest.raises(ValueError, match=r"names client 7; client ids are 0\.\.3"):
        fed.fit()
