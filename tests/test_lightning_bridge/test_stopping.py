"""Stopping a Lightning fit from native callbacks: EarlyStopping, a missing metric, should_stop."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
from bridge_helpers import QUIET, Seed000Recorder, TinyRegression, hooks, loader
from lightning.pytorch import Trainer

from callbacks import Callback, EarlyStopping, MetricNotFoundError, PrivacyBudget
from lightning_bridge import LightningCallbackAdapter


def test_early_stopping_stops_the_fit_after_patience_epochs_without_improvement():
    # Prepare: best score at epoch 1, then two epochs without improvement -> stop after epoch 3
    recorder = Seed000Recorder()
    stopper = EarlyStopping(patience=2, metric="score", mode="max")
    adapter = LightningCallbackAdapter([stopper, recorder], on_error="raise")
    trainer = Trainer(max_epochs=10, callbacks=[adapter], **QUIET)

    # Execute
    trainer.fit(TinyRegression(scores=[1.0, 2.0, 1.5, 1.9, 5.0]), loader(), loader())

    # Assert
    assert [e[1] for e in hooks(recorder.events, "on_epoch_end")] == [0, 1, 2, 3]
    assert hooks(recorder.events, "on_train_end") == [("on_train_end",)]
    assert recorder.events[-1] == ("on_train_end",)
    assert stopper.stopped_at == 3
    assert stopper.state_dict() == {"best": 2.0, "counter": 2, "stopped_at": 3, "patience": 2}
    assert trainer.should_stop


def test_early_stopping_missing_metric_raises_with_the_available_ones():
    # Prepare
    recorder = Seed000Recorder()
    adapter = LightningCallbackAdapter([EarlyStopping(metric="val_acc", mode="max"), recorder], on_error="raise")
    trainer = Trainer(max_epochs=2, callbacks=[adapter], **QUIET)

    # Execute / Assert
    message = r"EarlyStopping watches `val_acc`, which is not in the validation logs; available: val_loss\. HINT"
    with pytest.raises(MetricNotFoundError, match=message):
        trainer.fit(TinyRegression(), loader(), loader())
    assert recorder.events[-2:] == [("on_exception", "MetricNotFoundError"), ("on_train_end",)]


def test_early_stopping_missing_metric_is_logged_and_training_goes_on_with_warn(caplog):
    # Prepare
    adapter = LightningCallbackAdapter([EarlyStopping(metric="val_acc", mode="max")], on_error="warn")
    trainer = Trainer(max_epochs=2, callbacks=[adapter], **QUIET)

    # Execute
    with caplog.at_level(logging.WARNING, logger="callbacks"):
        trainer.fit(TinyRegression(), loader(), loader())

    # Assert: logged once per validation, with the traceback; the fit ran its 2 epochs
    records = [r for r in caplog.records if "EarlyStopping raised in on_validation_end" in r.getMessage()]
    assert len(records) == 2
    assert "available: val_loss" in str(records[0].exc_info[1])
    assert trainer.current_epoch == 2


class StopAtBatch(Callback):
    """Sets ``trainer.should_stop`` at ``on_batch_end`` of one batch (seed 003's way to stop)."""

    def __init__(self, epoch: int, batch_idx: int) -> None:
        self.at = (epoch, batch_idx)

    def on_batch_end(self, trainer, epoch, batch_idx):
        if (epoch, batch_idx) == self.at:
            trainer.should_stop = True


def test_should_stop_from_a_native_batch_hook_ends_the_fit_with_train_end_once():
    # Prepare
    recorder = Seed000Recorder()
    adapter = LightningCallbackAdapter([StopAtBatch(epoch=1, batch_idx=0), recorder], on_error="raise")
    trainer = Trainer(max_epochs=5, callbacks=[adapter], **QUIET)

    # Execute
    trainer.fit(TinyRegression(), loader(), loader())

    # Assert: Lightning ends the epoch at the flag (one process: no need to wait for the epoch end)
    assert [e[1] for e in hooks(recorder.events, "on_epoch_start")] == [0, 1]
    assert recorder.events[-1] == ("on_train_end",)
    assert hooks(recorder.events, "on_train_end") == [("on_train_end",)]


class SpendingRegression(TinyRegression):
    """Logs an account as DP-SGD does: ``dp/epsilon`` after epoch ``e`` is ``e + 1``, and the next epoch's beside it."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.log("dp/epsilon", float(self.current_epoch + 1), on_step=False, on_epoch=True)
        self.log("dp/epsilon_next", float(self.current_epoch + 2), on_step=False, on_epoch=True)
        return super().training_step(batch, batch_idx)


def test_privacy_budget_stops_the_fit_before_the_epoch_that_would_pass_it():
    # Prepare: a budget of 3.5; after epoch 2 (epsilon 3) one more epoch would spend 4
    budget = PrivacyBudget(max_epsilon=3.5, metric="dp/epsilon")
    trainer = Trainer(max_epochs=10, callbacks=[LightningCallbackAdapter([budget], on_error="raise")], **QUIET)

    # Execute
    trainer.fit(SpendingRegression(), loader(), loader())

    # Assert
    assert trainer.current_epoch == 3 and trainer.should_stop
    assert budget.stop_reason == "stopped at epoch 2: epsilon 3 of 3.5"
