"""ModelCheckpoint: which files it asks the trainer to write, when, and its state."""

from __future__ import annotations

import copy
import os
from types import SimpleNamespace

import pytest

from callbacks import CallbackManager, ModelCheckpoint


class RecordingTrainer:
    """Stands in for a trainer: records the checkpoint paths it is asked to write."""

    def __init__(self):
        self.should_stop = False
        self.written = []

    def save_checkpoint(self, path, weights_only=False):
        self.written.append(os.path.basename(path))


def run_rounds(manager, trainer, values):
    for round_num, value in enumerate(values, start=1):
        result = SimpleNamespace(metrics={"accuracy": value}, updates=[])
        manager.call("on_round_end", trainer=trainer, round_num=round_num, result=result)


@pytest.mark.parametrize(
    ("unit", "index", "is_best", "expected"),
    [
        ("epoch", 4, True, ["epoch=0004.ckpt", "best.ckpt", "last.ckpt"]),  # the 5th epoch
        ("epoch", 5, False, ["last.ckpt"]),
        ("epoch", 9, False, ["epoch=0009.ckpt", "last.ckpt"]),
        ("round", 5, False, ["round=0005.ckpt", "last.ckpt"]),  # rounds count from 1
        ("round", 4, True, ["best.ckpt", "last.ckpt"]),
    ],
)
def test_model_checkpoint_paths_for_periodic_best_and_last(unit, index, is_best, expected):
    # Prepare
    checkpoint = ModelCheckpoint(save_dir="ckpts", save_every=5)

    # Execute
    paths = checkpoint.paths_for(unit, index, is_best=is_best)

    # Assert
    assert paths == [os.path.join("ckpts", name) for name in expected]


def test_model_checkpoint_paths_for_without_period_or_last():
    # Prepare
    checkpoint = ModelCheckpoint(save_dir="ckpts", save_every=0, save_last=False)

    # Execute / Assert
    assert checkpoint.paths_for("round", 10, is_best=False) == []
    assert checkpoint.paths_for("round", 10, is_best=True) == [os.path.join("ckpts", "best.ckpt")]


def test_model_checkpoint_saves_rounds_periodically_and_on_new_best():
    # Prepare
    checkpoint = ModelCheckpoint(save_dir="out", save_every=2, metric="accuracy", mode="max")
    manager, trainer = CallbackManager([checkpoint], on_error="raise"), RecordingTrainer()

    # Execute
    run_rounds(manager, trainer, [0.5, 0.7, 0.6, 0.8])

    # Assert
    assert trainer.written == [
        "best.ckpt", "last.ckpt",  # round 1
        "round=0002.ckpt", "best.ckpt", "last.ckpt",  # round 2
        "last.ckpt",  # round 3
        "round=0004.ckpt", "best.ckpt", "last.ckpt",  # round 4
    ]  # fmt: skip
    assert checkpoint.best == 0.8
    assert checkpoint.best_path == os.path.join("out", "best.ckpt")


def test_model_checkpoint_saves_once_per_epoch_at_validation_end():
    # Prepare
    checkpoint = ModelCheckpoint(save_dir="out", save_every=1, metric="val_loss", mode="min")
    manager, trainer = CallbackManager([checkpoint], on_error="raise"), RecordingTrainer()

    # Execute: validation then epoch end, as in one centralised epoch
    for epoch, loss in enumerate([0.5, 0.6]):
        manager.call("on_validation_end", trainer=trainer, epoch=epoch, logs={"val_loss": loss})
        manager.call("on_epoch_end", trainer=trainer, epoch=epoch, logs={"val_loss": loss, "avg_loss": 1.0})

    # Assert
    assert trainer.written == ["epoch=0000.ckpt", "best.ckpt", "last.ckpt", "epoch=0001.ckpt", "last.ckpt"]


def test_model_checkpoint_saves_at_epoch_end_when_there_is_no_validation():
    # Prepare
    checkpoint = ModelCheckpoint(save_dir="out", save_every=2, metric="avg_loss", mode="min")
    manager, trainer = CallbackManager([checkpoint], on_error="raise"), RecordingTrainer()

    # Execute
    for epoch, loss in enumerate([0.5, 0.4]):
        manager.call("on_epoch_end", trainer=trainer, epoch=epoch, logs={"avg_loss": loss})

    # Assert
    assert trainer.written == ["best.ckpt", "last.ckpt", "epoch=0001.ckpt", "best.ckpt", "last.ckpt"]


def test_model_checkpoint_ignores_client_epochs_in_the_round_loop():
    # Prepare
    checkpoint = ModelCheckpoint(save_dir="out", metric="loss", mode="min")
    manager, trainer = CallbackManager([checkpoint], on_error="raise"), RecordingTrainer()

    # Execute
    metrics = {"loss": 0.3}
    manager.call("on_epoch_end", trainer=trainer, epoch=0, logs=metrics, metrics=metrics, learner="c0", round_num=1)

    # Assert
    assert trainer.written == []


def test_model_checkpoint_state_round_trip_keeps_the_best():
    # Prepare
    first = ModelCheckpoint(save_dir="out", save_every=0, metric="accuracy")
    run_rounds(CallbackManager([first], on_error="raise"), RecordingTrainer(), [0.5, 0.9])
    resumed = ModelCheckpoint(save_dir="out", save_every=0, metric="accuracy")
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    trainer = RecordingTrainer()

    # Execute: 0.8 is no new best after the restore
    result = SimpleNamespace(metrics={"accuracy": 0.8}, updates=[])
    CallbackManager([resumed], on_error="raise").call("on_round_end", trainer=trainer, round_num=3, result=result)

    # Assert
    assert resumed.state_dict() == {"best": 0.9, "best_path": os.path.join("out", "best.ckpt")}
    assert trainer.written == ["last.ckpt"]


def test_model_checkpoint_state_round_trip_gives_back_the_saved_state():
    # Prepare: a centralised run also keeps the epoch it last saved
    saved = ModelCheckpoint(save_dir="out", save_every=1, metric="val_loss", mode="min")
    manager = CallbackManager([saved], on_error="raise")
    manager.call("on_train_start", trainer=RecordingTrainer())
    for epoch, value in enumerate([0.5, 0.4]):
        manager.call("on_validation_end", trainer=RecordingTrainer(), epoch=epoch, logs={"val_loss": value})
    state = copy.deepcopy(saved.state_dict())

    # Execute
    resumed = ModelCheckpoint(save_dir="out", save_every=1, metric="val_loss", mode="min")
    resumed.load_state_dict(copy.deepcopy(state))

    # Assert
    assert state == {"best": 0.4, "best_path": os.path.join("out", "best.ckpt"), "saved_epoch": 1}
    assert resumed.state_dict() == state
