"""The round loop's hook order, seen by a callback written as seed 003 writes them (async, **kwargs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from callbacks import Callback
from federated import MLP, FederatedTrainer, FederationResult, NotEnoughClientsError, RoundResult


class Seed003Recorder(Callback):
    """Every hook of seed 003's interface, with its signatures exactly."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    async def on_train_start(self, trainer, **kwargs) -> None:
        self.events.append(("train_start",))

    async def on_train_end(self, trainer, result, **kwargs) -> None:
        self.events.append(("train_end", type(result).__name__, result.rounds))

    async def on_round_start(self, trainer, round_num, **kwargs) -> None:
        self.events.append(("round_start", round_num))

    async def on_round_end(self, trainer, round_num, result, **kwargs) -> None:
        assert isinstance(result, RoundResult)
        self.events.append(("round_end", round_num, sorted(result.metrics)))

    async def on_epoch_start(self, learner, epoch, **kwargs) -> None:
        self.events.append(("epoch_start", learner.client_id, epoch, kwargs["round_num"]))

    async def on_epoch_end(self, learner, epoch, metrics, **kwargs) -> None:
        assert learner.num_samples > 0 and "train_loss" in metrics
        self.events.append(("epoch_end", learner.client_id, epoch, kwargs["round_num"]))

    async def on_aggregate_start(self, trainer, updates, **kwargs) -> None:
        shapes = [{k: tuple(v.shape) for k, v in u.weights.items()} for u in updates]
        assert shapes and all(s == shapes[0] for s in shapes)
        self.events.append(("aggregate_start", [u.client_id for u in updates]))

    async def on_aggregate_end(self, trainer, weights, **kwargs) -> None:
        assert all(isinstance(t, torch.Tensor) for t in weights.values())
        self.events.append(("aggregate_end",))


class ExceptionRecorder(Callback):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_exception(self, exception: BaseException) -> None:
        self.events.append(f"exception:{type(exception).__name__}")

    def on_train_end(self, trainer: Any, result: FederationResult) -> None:
        self.events.append(f"train_end:interrupted={result.interrupted}")


def test_round_loop_fires_seed003_hooks_in_order(digits4: Any, make_model: Callable[..., MLP]) -> None:
    # Prepare
    loaders, test = digits4
    recorder = Seed003Recorder()
    fed = FederatedTrainer(
        make_model(), loaders[:2], test, rounds=2, clients_per_round=2, local_epochs=2, callbacks=[recorder],
        on_error="raise",
    )
    # Execute
    fed.fit()
    # Assert
    metrics = ["accuracy", "lr", "train_loss", "val_loss"]
    one_round = lambda r: [  # noqa: E731
        ("round_start", r),
        *[(kind, c, e, r) for c in (0, 1) for e in (0, 1) for kind in ("epoch_start", "epoch_end")],
        ("aggregate_start", [0, 1]),
        ("aggregate_end",),
        ("round_end", r, metrics),
    ]
    assert recorder.events == [("train_start",), *one_round(1), *one_round(2), ("train_end", "FederationResult", 2)]


def test_failure_fires_on_exception_then_train_end_once(make_model: Callable[..., MLP]) -> None:
    bad = DataLoader(TensorDataset(torch.zeros(4, 64), torch.full((4,), 99)), batch_size=2)  # label out of range
    recorder = ExceptionRecorder()
    fed = FederatedTrainer(make_model(), [bad], rounds=2, callbacks=[recorder])
    with pytest.raises(NotEnoughClientsError, match="round 1: 0 of 1 selected clients succeeded"):
        fed.fit()
    assert recorder.events == ["exception:NotEnoughClientsError", "train_end:interrupted=True"]


class FailingTrainEnd(Callback):
    def on_train_end(self, trainer: Any, result: FederationResult) -> None:
        raise RuntimeError("failing on_train_end")


def test_raise_gives_every_callback_on_train_end_then_raises_the_first_error(
    digits4: Any, make_model: Callable[..., MLP]
) -> None:
    # Prepare
    loaders, test = digits4
    recorder = ExceptionRecorder()
    fed = FederatedTrainer(
        make_model(), loaders[:1], test, rounds=1, local_epochs=1, callbacks=[FailingTrainEnd(), recorder],
        on_error="raise",
    )

    # Execute
    with pytest.raises(RuntimeError, match=r"^failing on_train_end$"):
        fed.fit()

    # Assert: the callback after the failing one still ended, once
    assert recorder.events.count("train_end:interrupted=False") == 1
