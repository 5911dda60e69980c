"""Native callbacks next to Lightning's own callbacks and loggers in one Trainer."""

from __future__ import annotations

import csv
import os
import time

import pytest
import torch
from bridge_helpers import QUIET, Seed000Recorder, TinyRegression, epoch_events, hooks, loader
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import AsyncCheckpointIO

from callbacks import Callback, EarlyStopping, LRScheduler, MetricsLogger, ModelCheckpoint, TensorBoard
from lightning_bridge import LightningCallbackAdapter


class SavedPaths(Callback):
    """Collects the path of every checkpoint reported by ``on_save_checkpoint``."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def on_save_checkpoint(self, epoch, path):
        self.paths.append(os.path.basename(path))


def test_adapter_runs_beside_lightning_callbacks_and_loggers(tmp_path):
    # Prepare
    recorder, saved = Seed000Recorder(), SavedPaths()
    natives = [
        recorder,
        saved,
        EarlyStopping(patience=5, metric="val_loss", mode="min"),
        ModelCheckpoint(save_dir=str(tmp_path / "native"), save_every=1, metric="val_loss", mode="min"),
        LRScheduler(scheduler_type="step", step_size=1, gamma=0.5),
        TensorBoard(log_dir=str(tmp_path / "native_tb")),
        MetricsLogger(path=str(tmp_path / "native_metrics.csv")),
    ]
    lightning_callbacks = [
        LightningEarlyStopping(monitor="val_loss", patience=5),
        LightningModelCheckpoint(dirpath=tmp_path / "lightning", filename="{epoch}", save_last=True),
        LearningRateMonitor(logging_interval="epoch"),
    ]
    loggers = [TensorBoardLogger(tmp_path, name="tb", version=0), CSVLogger(tmp_path, name="csv", version=0)]
    trainer = Trainer(
        max_epochs=2,
        accelerator="cpu",
        callbacks=[LightningCallbackAdapter(natives, on_error="raise"), *lightning_callbacks],
        logger=loggers,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )

    # Execute
    trainer.fit(TinyRegression(), loader(), loader())

    # Assert: the native flow is whole, Lightning's callbacks and loggers did their part
    assert [e[1] for e in hooks(recorder.events, "on_epoch_end")] == [0, 1]
    assert recorder.events[-1] == ("on_train_end",)
    assert sorted(os.listdir(tmp_path / "lightning")) == ["epoch=1.ckpt", "last.ckpt"]
    assert "epoch=0000.ckpt" in os.listdir(tmp_path / "native")
    # on_save_checkpoint reports every file written, Lightning's own ModelCheckpoint's too
    assert {"epoch=0.ckpt", "epoch=1.ckpt", "last.ckpt", "epoch=0000.ckpt", "best.ckpt"} <= set(saved.paths)
    with open(tmp_path / "csv" / "version_0" / "metrics.csv", newline="") as f:
        columns = next(csv.reader(f))
    assert {"val_loss", "lr-SGD"} <= set(columns)
    assert list((tmp_path / "tb" / "version_0").glob("events.out.tfevents.*"))
    assert [row["lr"] for row in natives[-1].history] == [0.1, 0.05]


LIGHTNING_CHECKPOINTING = {**QUIET, "enable_checkpointing": True}


class CheckpointEvents(Callback):
    """Records ``(hook, epoch)`` of the epoch hooks and ``(hook, epoch, file name, complete)`` of each save;
    ``complete``: the file loaded, and was written in ``epoch``, when the hook fired."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_epoch_start(self, epoch):
        self.events.append(("on_epoch_start", epoch))

    def on_validation_end(self, epoch):
        self.events.append(("on_validation_end", epoch))

    def on_save_checkpoint(self, epoch, path):
        try:
            complete = torch.load(path, weights_only=True)["epoch"] == epoch
        except (OSError, RuntimeError, EOFError):
            complete = False
        self.events.append(("on_save_checkpoint", epoch, os.path.basename(path), complete))

    def on_epoch_end(self, epoch):
        self.events.append(("on_epoch_end", epoch))


class SlowCheckpointIO(TorchCheckpointIO):
    """Torch's checkpoint IO, a quarter of a second slower per file: under ``AsyncCheckpointIO`` the
    save is still running when the trainer goes on."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        time.sleep(0.25)
        super().save_checkpoint(checkpoint, path, storage_options)


def saved(epoch, *names):
    return [("on_save_checkpoint", epoch, name, True) for name in names]


def lightning_files(epoch, steps_per_epoch=2):
    """The files of ``ModelCheckpoint(save_top_k=-1, save_last=True)`` in ``epoch``."""
    return f"epoch={epoch}-step={(epoch + 1) * steps_per_epoch}.ckpt", "last.ckpt"


# case: (ModelCheckpoint arguments, Trainer arguments, whether validation runs, AsyncCheckpointIO)
CHECKPOINTING = {
    "at validation end": ({"save_on_train_epoch_end": False}, {}, True, False),
    "at train epoch end": ({"save_on_train_epoch_end": True}, {}, True, False),
    "by default": ({}, {}, True, False),
    "without a val loader": ({}, {}, False, False),
    "with limit_val_batches=0": ({}, {"limit_val_batches": 0}, False, False),
    "async at validation end": ({"save_on_train_epoch_end": False}, {}, True, True),
    "async by default": ({}, {}, True, True),
}


@pytest.mark.parametrize("adapter_first", [True, False], ids=["adapter first", "adapter last"])
@pytest.mark.parametrize("case", sorted(CHECKPOINTING))
def test_adapter_reports_lightning_checkpoints_in_their_epoch_before_its_end(case, adapter_first, tmp_path):
    # Prepare
    checkpoint_args, trainer_args, validation, background = CHECKPOINTING[case]
    events = CheckpointEvents()
    lightning_checkpoint = LightningModelCheckpoint(dirpath=tmp_path, save_top_k=-1, save_last=True, **checkpoint_args)
    adapter = LightningCallbackAdapter([events], on_error="raise")
    callbacks = [adapter, lightning_checkpoint] if adapter_first else [lightning_checkpoint, adapter]
    plugins = [AsyncCheckpointIO(SlowCheckpointIO())] if background else None
    trainer = Trainer(max_epochs=3, callbacks=callbacks, plugins=plugins, **LIGHTNING_CHECKPOINTING, **trainer_args)

    # Execute
    trainer.fit(TinyRegression(), loader(), loader() if case != "without a val loader" else None)

    # Assert: the seed-000 order, validation end -> saves -> epoch end, with the epoch the files were
    # written in, each hook fired once its file was complete on disk
    expected = []
    for epoch in range(3):
        expected += [("on_epoch_start", epoch), *[("on_validation_end", epoch)] * validation]
        expected += [*saved(epoch, *lightning_files(epoch)), ("on_epoch_end", epoch)]
    assert events.events == expected


def test_adapter_reports_native_and_lightning_checkpoints_of_an_epoch_after_its_validation_end(tmp_path):
    # Prepare: the native ModelCheckpoint writes during on_validation_end, before the recorder's turn;
    # Lightning's writes at the end of the training epoch
    events = CheckpointEvents()
    native = ModelCheckpoint(save_dir=str(tmp_path / "native"), save_every=1, metric="score", mode="max")
    lightning_checkpoint = LightningModelCheckpoint(dirpath=tmp_path / "lightning", save_top_k=-1, save_last=True)
    adapter = LightningCallbackAdapter([native, events], on_error="raise")
    trainer = Trainer(max_epochs=2, callbacks=[adapter, lightning_checkpoint], **LIGHTNING_CHECKPOINTING)

    # Execute
    trainer.fit(TinyRegression(scores=[1.0, 2.0]), loader(), loader())

    # Assert: every callback sees its on_validation_end before the files of the epoch
    assert events.events == [
        e
        for epoch in range(2)
        for e in [
            ("on_epoch_start", epoch),
            ("on_validation_end", epoch),
            *saved(epoch, f"epoch={epoch:04d}.ckpt", "best.ckpt", "last.ckpt", *lightning_files(epoch)),
            ("on_epoch_end", epoch),
        ]
    ]


def test_resume_from_a_lightning_checkpoint_of_the_train_epoch_end_runs_that_epoch_end_once(tmp_path):
    # Prepare: Lightning's ModelCheckpoint writes before the native epoch end, so its file records it as due
    def natives(out):
        lr, metrics = LRScheduler(scheduler_type="step", step_size=1, gamma=0.5), MetricsLogger(path=str(out / "m.csv"))
        return [lr, metrics, Seed000Recorder()]

    def fit(callbacks, ckpt_path=None):
        checkpoint = LightningModelCheckpoint(dirpath=tmp_path / "lightning", save_top_k=-1)
        adapter = LightningCallbackAdapter(callbacks, on_error="raise")
        trainer = Trainer(max_epochs=3, callbacks=[adapter, checkpoint], **LIGHTNING_CHECKPOINTING)
        trainer.fit(TinyRegression(), loader(), loader(), ckpt_path=ckpt_path)

    uninterrupted = natives(tmp_path / "a")
    fit(uninterrupted)
    resumed = natives(tmp_path / "a")

    # Execute
    fit(resumed, ckpt_path=str(tmp_path / "lightning" / "epoch=1-step=4.ckpt"))

    # Assert: epoch 1's end once, then epoch 2; the natives end as in the uninterrupted run
    assert resumed[2].events == [
        ("on_train_start",),
        ("on_epoch_end", 1),
        *epoch_events(2, batches=2, saves=1),
        ("on_train_end",),
    ]
    assert [row["lr"] for row in resumed[1].history] == [0.1, 0.05, 0.025]
    assert resumed[1].history == uninterrupted[1].history


def test_adapter_reports_background_saves_of_a_native_epoch_end_right_after_it(tmp_path):
    # Prepare: no validation, so the native ModelCheckpoint writes during on_epoch_end, in the background
    events = CheckpointEvents()
    native = ModelCheckpoint(save_dir=str(tmp_path), save_every=1, metric="avg_loss", mode="min")
    adapter = LightningCallbackAdapter([native, events], on_error="raise")
    trainer = Trainer(max_epochs=2, callbacks=[adapter], plugins=[AsyncCheckpointIO(SlowCheckpointIO())], **QUIET)

    # Execute
    trainer.fit(TinyRegression(), loader())

    # Assert: each file once complete, with its epoch, before the next epoch starts
    assert events.events == [
        e
        for epoch in range(2)
        for e in [
            ("on_epoch_start", epoch),
            ("on_epoch_end", epoch),
            *saved(epoch, f"epoch={epoch:04d}.ckpt", "best.ckpt", "last.ckpt"),
        ]
    ]
