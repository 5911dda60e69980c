"""An OiaFed 0.2 callback in a centralised ``lightning.Trainer`` fit: its fit, epoch and step hooks."""

from __future__ import annotations

import importlib.util
from collections import Counter
from typing import Any

import pytest
from bridge_helpers import QUIET, TinyRegression, loader
from lightning.pytorch import Trainer

from callbacks.oiafed import import_oiafed
from lightning_bridge import LightningCallbackAdapter

if importlib.util.find_spec("oiafed") is None:
    pytest.skip("needs the oiafed extra (make venv EXTRAS=dev,oiafed)", allow_module_level=True)

oiafed_base = import_oiafed("oiafed.callback.base")
oiafed_types = import_oiafed("oiafed.core.types")


class FitRecorder(oiafed_base.Callback):  # type: ignore[misc, name-defined]
    """OiaFed's hooks of a learner's fit and of a run, sync and async, with OiaFed's signatures."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    async def on_train_begin(self, trainer, context=None):
        self.events.append(("on_train_begin",))

    async def on_round_end(self, trainer, round_num, context=None):
        self.events.append(("on_round_end",))

    async def on_fit_start(self, learner, config=None):
        self.events.append(("on_fit_start", config))

    async def on_epoch_start(self, learner, epoch):
        self.events.append(("on_epoch_start", epoch))

    async def on_step_start(self, learner, step):
        self.events.append(("on_step_start", step))

    def on_step_end(self, learner, step, metrics=None):  # a plain def runs too
        assert isinstance(metrics, oiafed_types.StepMetrics) and metrics.loss > 0 and metrics.batch_size == 4
        self.events.append(("on_step_end", step))

    async def on_epoch_end(self, learner, epoch, metrics=None):
        assert isinstance(metrics, oiafed_types.EpochMetrics) and metrics.total_samples == 8
        self.events.append(("on_epoch_end", epoch, metrics.epoch, "val_loss" in metrics.metrics))

    async def on_fit_end(self, learner, result=None):
        assert isinstance(result, oiafed_types.TrainResult) and result.num_samples == 8
        weights = set(result.weights) == {"layer.weight", "layer.bias"}
        self.events.append(("on_fit_end", result.metrics.total_epochs, weights))


def test_oiafed_callback_in_a_lightning_fit_gets_its_fit_epoch_and_step_hooks() -> None:
    recorder = FitRecorder()
    trainer = Trainer(max_epochs=2, callbacks=[LightningCallbackAdapter([recorder], on_error="raise")], **QUIET)

    trainer.fit(TinyRegression(), loader(), loader())

    epoch = [("on_step_start", 0), ("on_step_end", 0), ("on_step_start", 1), ("on_step_end", 1)]
    assert recorder.events == [
        ("on_fit_start", {"epochs": 2}),
        ("on_epoch_start", 1),
        *epoch,
        ("on_epoch_end", 1, 1, True),
        ("on_epoch_start", 2),
        *epoch,
        ("on_epoch_end", 2, 2, True),
        ("on_fit_end", 2, True),
    ]
    assert Counter(e[0] for e in recorder.events)["on_train_begin"] == 0  # a fit has no run or rounds
