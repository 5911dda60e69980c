"""On a CUDA device: 16-bit mixed precision with its grad scaler, and no host sync per step."""

from __future__ import annotations

import pytest
import torch
from bridge_helpers import Seed000Recorder, TinyRegression, loader
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback as LightningCallback

from callbacks import EarlyStopping, LRScheduler, MetricsLogger, ModelCheckpoint, TensorBoard
from lightning_bridge import LightningCallbackAdapter

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CUDA = {
    "accelerator": "cuda",
    "devices": 1,
    "logger": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "enable_checkpointing": False,
}


def five_builtins(out):
    return [
        EarlyStopping(patience=5, metric="val_loss", mode="min"),
        ModelCheckpoint(save_dir=str(out / "ckpt"), save_every=1, metric="val_loss", mode="min"),
        LRScheduler(scheduler_type="cosine", T_max=4),
        TensorBoard(log_dir=str(out / "tb")),
        MetricsLogger(path=str(out / "metrics.csv")),
    ]


class SyncDebugSwitch(LightningCallback):
    """Makes CUDA raise on any synchronising call between an armed switch and a disarmed one."""

    def __init__(self, arm: bool) -> None:
        self.mode = "error" if arm else "default"

    def on_train_batch_start(self, *args, **kwargs) -> None:
        torch.cuda.set_sync_debug_mode(self.mode)

    def on_train_batch_end(self, *args, **kwargs) -> None:
        torch.cuda.set_sync_debug_mode(self.mode)


def test_gpu_16_mixed_with_the_five_builtins_keeps_the_loss_on_the_device(tmp_path):
    # Prepare
    recorder = Seed000Recorder()
    adapter = LightningCallbackAdapter([recorder, *five_builtins(tmp_path)], on_error="raise")
    trainer = Trainer(max_epochs=2, precision="16-mixed", callbacks=[adapter], **CUDA)

    # Execute
    trainer.fit(TinyRegression(), loader(), loader())

    # Assert
    assert isinstance(trainer.precision_plugin.scaler, torch.amp.GradScaler)
    assert len(recorder.step_losses) == 4
    assert all(loss.device.type == "cuda" and not loss.requires_grad for loss in recorder.step_losses)
    assert all(type(value) is float for logs in recorder.epoch_logs for value in logs.values())
    assert [e[1] for e in recorder.events if e[0] == "on_epoch_end"] == [0, 1]
    assert (tmp_path / "ckpt" / "last.ckpt").exists()
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["epoch"] == 1
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 1


def test_gpu_adapter_per_step_hooks_do_not_synchronise(tmp_path):
    # Prepare: CUDA errors on a synchronising call made by the adapter or the natives per step
    recorder = Seed000Recorder()
    adapter = LightningCallbackAdapter([recorder, *five_builtins(tmp_path)], on_error="raise")
    callbacks = [SyncDebugSwitch(arm=True), adapter, SyncDebugSwitch(arm=False)]
    trainer = Trainer(max_epochs=2, precision="16-mixed", callbacks=callbacks, **CUDA)

    # Execute
    try:
        trainer.fit(TinyRegression(), loader(), loader())
    finally:
        torch.cuda.set_sync_debug_mode("default")

    # Assert
    assert len(recorder.step_losses) == 4
