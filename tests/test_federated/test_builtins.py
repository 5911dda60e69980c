"""The five built-in callbacks in the round loop: rounds are the unit (SPEC's federated column)."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from callbacks import Callback, EarlyStopping, LRScheduler, MetricsLogger, ModelCheckpoint, TensorBoard
from federated import MLP, FederatedTrainer
from federated.checkpoint import load_history


class SaveRecorder(Callback):
    def __init__(self) -> None:
        self.saved: list[tuple[int, str, bool]] = []

    def on_save_checkpoint(self, round_num: int, path: str) -> None:
        self.saved.append((round_num, os.path.basename(path), os.path.isfile(path)))


def test_early_stopping_stops_by_rounds(digits4: Any, make_model: Callable[..., MLP]) -> None:
    # Prepare: val_loss never improves by 10, so the round after the first stops the run
    loaders, test = digits4
    stop = EarlyStopping(patience=1, metric="val_loss", mode="min", min_delta=10.0)
    fed = FederatedTrainer(make_model(), loaders[:2], test, rounds=5, callbacks=[stop], on_error="raise")
    # Execute
    result = fed.fit()
    # Assert
    assert result.rounds == 2 and result.stopped_early
    assert stop.stopped_at == 2 and fed.should_stop


def test_model_checkpoint_writes_federation_checkpoints(
    digits4: Any, make_model: Callable[..., MLP], tmp_path: Path
) -> None:
    loaders, test = digits4
    recorder = SaveRecorder()
    ckpt = ModelCheckpoint(save_dir=str(tmp_path / "ckpt"), save_every=2, metric="accuracy", mode="max")
    fed = FederatedTrainer(make_model(), loaders[:2], test, rounds=4, callbacks=[ckpt, recorder], on_error="raise")
    result = fed.fit()

    files = sorted(os.listdir(tmp_path / "ckpt"))
    assert files == ["best.ckpt", "history.jsonl", "last.ckpt", "round=0002.ckpt", "round=0004.ckpt"]
    assert [(r, name) for r, name, _ in recorder.saved if name.startswith("round=")] == [
        (2, "round=0002.ckpt"),
        (4, "round=0004.ckpt"),
    ]
    assert all(exists for _, _, exists in recorder.saved)  # fired after the file was written
    periodic = torch.load(tmp_path / "ckpt" / "round=0002.ckpt", weights_only=True)
    history = load_history(tmp_path / "ckpt" / "round=0002.ckpt", periodic)
    assert periodic["round"] == 2 and [r["round_num"] for r in history] == [1, 2]
    best_round = max(result.history, key=lambda r: r.metrics["accuracy"]).round_num
    assert torch.load(tmp_path / "ckpt" / "best.ckpt", weights_only=True)["round"] == best_round
    last = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    for name, tensor in result.weights.items():
        assert torch.equal(last["weights"][name], tensor)


def test_tensorboard_logs_round_metrics_at_round_steps(
    digits4: Any, make_model: Callable[..., MLP], tmp_path: Path
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    loaders, test = digits4
    fed = FederatedTrainer(
        make_model(), loaders[:2], test, rounds=3, callbacks=[TensorBoard(log_dir=str(tmp_path))], on_error="raise"
    )
    result = fed.fit()

    events = EventAccumulator(str(tmp_path))
    events.Reload()
    accuracy = events.Scalars("accuracy")
    assert [e.step for e in accuracy] == [1, 2, 3]
    assert [e.value for e in accuracy] == pytest.approx([r.metrics["accuracy"] for r in result.history])
    assert [e.step for e in events.Scalars("client/0/train_loss")] == [1, 2, 3]
    assert "train/batch_loss" not in events.Tags()["scalars"]  # no per-client-epoch centralised logging


def test_metrics_logger_writes_one_row_per_round(
    digits4: Any, make_model: Callable[..., MLP], tmp_path: Path
) -> None:
    loaders, test = digits4
    logger = MetricsLogger(path=str(tmp_path / "metrics.csv"))
    fed = FederatedTrainer(make_model(), loaders, test, rounds=3, clients_per_round=2, local_epochs=2,
                           callbacks=[logger], on_error="raise")
    result = fed.fit()

    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["round"]) for row in rows] == [1, 2, 3]
    assert [float(row["accuracy"]) for row in rows] == pytest.approx([r.metrics["accuracy"] for r in result.history])
    assert len(logger.history) == 3


def test_lr_scheduler_schedules_the_clients_lr(digits4: Any, make_model: Callable[..., MLP]) -> None:
    loaders, _ = digits4
    schedule = LRScheduler(scheduler_type="step", step_size=1, gamma=0.5)
    fed = FederatedTrainer(make_model(lr=0.2), loaders[:2], rounds=3, callbacks=[schedule], on_error="raise")
    result = fed.fit()

    for round_result, expected in zip(result.history, [0.2, 0.1, 0.05], strict=True):
        assert [u.metrics["lr"] for u in round_result.updates] == pytest.approx([expected, expected])
        assert round_result.metrics["lr"] == pytest.approx(expected)
    assert [r.metrics["lr_scale"] for r in result.history] == pytest.approx([1.0, 0.5, 0.25])
