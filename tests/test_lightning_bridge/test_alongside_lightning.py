"""Native callbacks next to Lightning's own callbacks and loggers in one Trainer."""

from __future__ import annotations

import csv
import os

from bridge_helpers import Seed000Recorder, TinyRegression, hooks, loader
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

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
