"""What the hooks receive: the step loss, the epoch logs, mixed precision, no host sync per step."""

from __future__ import annotations

import csv

import pytest
import torch
from bridge_helpers import QUIET, Seed000Recorder, TinyRegression, is_close, loader
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback as LightningCallback

from callbacks import EarlyStopping, LRScheduler, MetricsLogger, ModelCheckpoint, TensorBoard
from lightning_bridge import LightningCallbackAdapter


def test_adapter_step_loss_is_a_detached_tensor_and_epoch_logs_are_floats():
    # Prepare
    recorder = Seed000Recorder()
    trainer = Trainer(max_epochs=2, callbacks=[LightningCallbackAdapter([recorder], on_error="raise")], **QUIET)

    # Execute
    trainer.fit(TinyRegression(lr=0.05), loader(samples=12), loader())

    # Assert: the loss the optimizer stepped on, detached
    assert len(recorder.step_losses) == 6
    assert all(isinstance(loss, torch.Tensor) and not loss.requires_grad for loss in recorder.step_losses)
    assert all(metrics == {"lr": 0.05} for metrics in recorder.step_metrics)
    for epoch, logs in enumerate(recorder.epoch_logs):
        assert sorted(logs) == ["avg_loss", "lr", "val_loss"]
        assert all(type(value) is float for value in logs.values())
        losses = [float(loss) for loss in recorder.step_losses[3 * epoch : 3 * epoch + 3]]
        assert is_close(logs["avg_loss"], sum(losses) / 3)
        assert logs["lr"] == 0.05
        assert logs["val_loss"] == recorder.validation_logs[epoch]["val_loss"]
    assert all(type(value) is float for logs in recorder.validation_logs for value in logs.values())


def test_adapter_under_bf16_mixed_on_cpu():
    # Prepare
    recorder = Seed000Recorder()
    adapter = LightningCallbackAdapter([recorder], on_error="raise")
    trainer = Trainer(max_epochs=1, precision="bf16-mixed", callbacks=[adapter], **QUIET)

    # Execute
    trainer.fit(TinyRegression(), loader(), loader())

    # Assert
    assert [event[0] for event in recorder.events][-2:] == ["on_epoch_end", "on_train_end"]
    for loss in recorder.step_losses:
        assert loss.dtype in (torch.bfloat16, torch.float32) and not loss.requires_grad
    assert all(type(value) is float for value in recorder.epoch_logs[0].values())
    assert is_close(recorder.epoch_logs[0]["avg_loss"], sum(float(loss) for loss in recorder.step_losses) / 2)


def test_metrics_logger_writes_one_csv_row_per_epoch(tmp_path):
    # Prepare
    path = tmp_path / "metrics.csv"
    metrics = MetricsLogger(path=str(path))
    recorder = Seed000Recorder()
    trainer = Trainer(max_epochs=3, callbacks=[LightningCallbackAdapter([recorder, metrics])], **QUIET)

    # Execute
    trainer.fit(TinyRegression(), loader(), loader())

    # Assert
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2]
    for row, logs in zip(rows, recorder.epoch_logs, strict=True):
        assert {k: float(v) for k, v in row.items() if k != "epoch"} == pytest.approx(logs)
    assert metrics.history == [{"epoch": e, **logs} for e, logs in enumerate(recorder.epoch_logs)]


_TO_HOST = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")
_ORIGINALS = {name: getattr(torch.Tensor, name) for name in _TO_HOST}


def _count_host_transfers(counts: dict[str, int]) -> None:
    for name, original in _ORIGINALS.items():

        def counting(tensor, *args, _name=name, _original=original, **kwargs):
            counts[_name] = counts.get(_name, 0) + 1
            return _original(tensor, *args, **kwargs)

        setattr(torch.Tensor, name, counting)


def _stop_counting() -> None:
    for name, original in _ORIGINALS.items():
        setattr(torch.Tensor, name, original)


class HostTransferSwitch(LightningCallback):
    """Starts (``arm=True``) or stops counting tensor-to-host conversions at each training batch hook.

    One armed switch just before the adapter and one disarming switch just after it: Lightning calls
    callbacks in list order, so the count is what the adapter's per-batch hooks did.
    """

    def __init__(self, counts: dict[str, int], arm: bool) -> None:
        self.counts = counts
        self.arm = arm

    def _switch(self) -> None:
        if self.arm:
            _count_host_transfers(self.counts)
        else:
            _stop_counting()

    def on_train_batch_start(self, *args, **kwargs) -> None:
        self._switch()

    def on_train_batch_end(self, *args, **kwargs) -> None:
        self._switch()


def test_host_transfer_switch_counts_a_conversion():
    counts: dict[str, int] = {}
    _count_host_transfers(counts)
    try:
        float(torch.tensor(1.0))
    finally:
        _stop_counting()
    assert counts == {"__float__": 1}


def test_adapter_per_step_hooks_never_move_a_tensor_to_the_host(tmp_path):
    # Prepare: the five built-ins and a seed-000 callback, between the two switches
    counts: dict[str, int] = {}
    natives = [
        Seed000Recorder(),
        EarlyStopping(metric="val_loss", mode="min"),
        ModelCheckpoint(save_dir=str(tmp_path / "ckpt"), metric="val_loss", mode="min", save_every=1),
        LRScheduler(scheduler_type="step", step_size=1),
        TensorBoard(log_dir=str(tmp_path / "tb")),
        MetricsLogger(path=str(tmp_path / "metrics.csv")),
    ]
    adapter = LightningCallbackAdapter(natives, on_error="raise")
    callbacks = [HostTransferSwitch(counts, arm=True), adapter, HostTransferSwitch(counts, arm=False)]
    trainer = Trainer(max_epochs=2, callbacks=callbacks, **QUIET)

    # Execute
    try:
        trainer.fit(TinyRegression(), loader(), loader())
    finally:
        _stop_counting()

    # Assert: 4 steps went through the armed section without one conversion
    assert len(natives[0].step_losses) == 4
    assert counts == {}
