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


class PreferInRound(Callback):
    """Sets selection weights at the start of one round only, and nothing in the others."""

    def __init__(self, round_num: int, weights: dict[int, float]) -> None:
        self.round_num, self.weights = round_num, weights

    def on_round_start(self, trainer: Any, round_num: int) -> None:
        if round_num == self.round_num:
            trainer.client_selection_weights = dict(self.weights)


def selected(fed: FederatedTrainer) -> list[list[int]]:
    return [r.selected for r in fed.fit().history]


def test_selection_weights_are_honoured(digits4: Any, make_model: Callable[..., MLP]) -> None:
    loaders, _ = digits4
    fed = FederatedTrainer(
        make_model(), loaders, rounds=3, clients_per_round=2, callbacks=[PreferClients({1: 1.0, 3: 5.0})]
    )
    assert selected(fed) == [[1, 3]] * 3


def test_selection_weights_apply_to_their_round_only(digits4: Any, make_model: Callable[..., MLP]) -> None:
    # Prepare: weights for round 2 only; rounds 1 and 3 set nothing
    loaders, _ = digits4
    uniform = FederatedTrainer(make_model(), loaders, rounds=3, clients_per_round=2)
    steered = FederatedTrainer(
        make_model(), loaders, rounds=3, clients_per_round=2, callbacks=[PreferInRound(2, {0: 1.0, 3: 1.0})]
    )

    # Execute
    default, picks = selected(uniform), selected(steered)

    # Assert: round 2 honours the weights, round 3 samples by default again
    assert default[1] != [0, 3]
    assert picks == [default[0], [0, 3], default[2]]
    assert steered.client_selection_weights is None


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
