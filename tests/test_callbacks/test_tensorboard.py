"""TensorBoard: events written by rank 0, read back with TensorBoard's own reader."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from callbacks import CallbackManager, TensorBoard

ROUNDS = {
    1: {"accuracy": 0.5, "val_loss": 0.9},
    2: {"accuracy": 0.75, "val_loss": 0.6},
    3: {"accuracy": 0.875, "val_loss": 0.4},
}


def scalars(log_dir):
    """``{tag: [(step, value), ...]}`` of the events under ``log_dir``."""
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def run_federation(manager, server):
    manager.call("on_train_start", trainer=server)
    for round_num, metrics in ROUNDS.items():
        # A client's local epoch: the round is the unit, so nothing is written for it
        local = {"loss": 1.0 / round_num}
        client_epoch = {"epoch": 0, "learner": "c", "round_num": round_num}
        manager.call("on_epoch_end", trainer=server, logs=local, metrics=local, **client_epoch)
        updates = [
            SimpleNamespace(client_id=0, num_samples=10, weights={}, metrics={"loss": 1.0 / round_num}),
            SimpleNamespace(client_id=1, num_samples=20, weights={}, metrics={"loss": 2.0 / round_num}),
        ]
        result = SimpleNamespace(metrics=dict(metrics), updates=updates)
        manager.call("on_round_end", trainer=server, round_num=round_num, result=result)
    manager.call("on_train_end", trainer=server, result=None)


def test_tensorboard_writes_round_metrics_at_the_round_number(tmp_path):
    # Prepare
    board = TensorBoard(log_dir=str(tmp_path / "tb"))
    manager = CallbackManager([board], on_error="raise")

    # Execute
    run_federation(manager, SimpleNamespace(is_global_zero=True, should_stop=False))

    # Assert
    found = scalars(tmp_path / "tb")
    assert set(found) == {"accuracy", "val_loss", "client/0/loss", "client/1/loss"}
    assert found["accuracy"] == [(r, pytest.approx(m["accuracy"])) for r, m in ROUNDS.items()]
    assert found["val_loss"] == [(r, pytest.approx(m["val_loss"])) for r, m in ROUNDS.items()]
    assert found["client/1/loss"] == [(1, 2.0), (2, 1.0), (3, pytest.approx(2 / 3))]
    assert board.writer is None  # closed at on_train_end


def test_tensorboard_writes_nothing_on_other_ranks(tmp_path):
    # Prepare
    log_dir = tmp_path / "tb"
    manager = CallbackManager([TensorBoard(log_dir=str(log_dir))], on_error="raise")

    # Execute
    run_federation(manager, SimpleNamespace(is_global_zero=False, should_stop=False))

    # Assert
    assert not log_dir.exists() or not any(log_dir.iterdir())


def test_tensorboard_writes_batch_losses_and_epoch_metrics(tmp_path):
    # Prepare
    manager = CallbackManager([TensorBoard(log_dir=str(tmp_path))], on_error="raise")
    trainer = SimpleNamespace(is_global_zero=True)
    losses = [[0.9, 0.8], [0.7, 0.6]]

    # Execute: two centralised epochs of two batches
    manager.call("on_train_start", trainer=trainer)
    for epoch, batch_losses in enumerate(losses):
        for batch_idx, loss in enumerate(batch_losses):
            step = {"epoch": epoch, "batch_idx": batch_idx, "loss": torch.tensor(loss), "metrics": {}}
            manager.call("on_train_step_end", trainer=trainer, **step)
        logs = {"avg_loss": sum(batch_losses) / 2, "val_loss": 1.0 - epoch / 10}
        manager.call("on_epoch_end", trainer=trainer, epoch=epoch, logs=logs)
    manager.call("on_train_end", trainer=trainer, result=None)

    # Assert
    found = scalars(tmp_path)
    assert found["train/batch_loss"] == [(i, pytest.approx(v)) for i, v in enumerate([0.9, 0.8, 0.7, 0.6])]
    assert found["avg_loss"] == [(0, pytest.approx(0.85)), (1, pytest.approx(0.65))]
    assert found["val_loss"] == [(0, 1.0), (1, pytest.approx(0.9))]


def one_epoch(board, losses, epoch):
    manager = CallbackManager([board], on_error="raise")
    manager.call("on_train_start", trainer=SimpleNamespace())
    for batch_idx, loss in enumerate(losses):
        manager.call("on_train_step_end", epoch=epoch, batch_idx=batch_idx, loss=torch.tensor(loss), metrics={})
    manager.call("on_epoch_end", epoch=epoch, logs={})
    manager.call("on_train_end", trainer=None, result=None)


def test_tensorboard_state_round_trip_continues_the_batch_step(tmp_path):
    # Prepare
    first = TensorBoard(log_dir=str(tmp_path))
    one_epoch(first, [0.9, 0.8, 0.7], epoch=0)

    # Execute
    resumed = TensorBoard(log_dir=str(tmp_path))
    resumed.load_state_dict(first.state_dict())
    one_epoch(resumed, [0.6, 0.5], epoch=1)

    # Assert
    assert first.state_dict() == {"step": 3}
    assert [step for step, _ in scalars(tmp_path)["train/batch_loss"]] == [0, 1, 2, 3, 4]
