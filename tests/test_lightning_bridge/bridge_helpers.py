"""Small Lightning modules, data and recording callbacks shared by the bridge tests.

Module level, so that they pickle, and importable from the DDP script run as a separate program.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch.utils.data import DataLoader, TensorDataset

from callbacks import Callback

QUIET: dict[str, Any] = {
    "accelerator": "cpu",
    "devices": 1,
    "logger": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "enable_checkpointing": False,
}
"""Trainer arguments that keep a test run small and silent."""


def loader(samples: int = 8, batch_size: int = 4, seed: int = 0) -> DataLoader:
    """``samples`` random regression pairs (4 features, 1 target), ``samples // batch_size`` batches."""
    g = torch.Generator().manual_seed(seed)
    data = TensorDataset(torch.randn(samples, 4, generator=g), torch.randn(samples, 1, generator=g))
    return DataLoader(data, batch_size=batch_size)


class TinyRegression(LightningModule):
    """A linear regression that logs ``val_loss``, optionally a scripted validation ``score``.

    Args:
        lr: SGD learning rate.
        scores: ``score`` logged at validation of epoch ``i`` is ``scores[i]`` (a metric whose course
            a test decides). Defaults to none.
        fail_at_epoch: ``training_step`` raises ``RuntimeError`` in this epoch. Defaults to never.
    """

    def __init__(self, lr: float = 0.1, scores: Sequence[float] = (), fail_at_epoch: int | None = None) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.layer = torch.nn.Linear(4, 1)
        self.lr = lr
        self.scores = list(scores)
        self.fail_at_epoch = fail_at_epoch

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.current_epoch == self.fail_at_epoch:
            raise RuntimeError(f"boom in epoch {self.current_epoch}")
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))
        if self.scores:
            self.log("score", float(self.scores[min(self.current_epoch, len(self.scores) - 1)]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class RegressionData(LightningDataModule):
    """The data of :func:`loader` as a data module (for LightningCLI)."""

    def __init__(self, samples: int = 8, batch_size: int = 4) -> None:
        super().__init__()
        self.samples = samples
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return loader(self.samples, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return loader(self.samples, self.batch_size, seed=1)


class Seed000Recorder(Callback):
    """A callback written against the seed-000 ``TrainingEngine`` flow, signatures as documented there.

    ``events`` holds ``(hook, *arguments)``; ``logs`` are recorded by their sorted keys, and the full
    values go to ``step_losses``, ``validation_logs`` and ``epoch_logs``.
    """

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.step_losses: list[torch.Tensor] = []
        self.step_metrics: list[dict[str, float]] = []
        self.validation_logs: list[dict[str, float]] = []
        self.epoch_logs: list[dict[str, float]] = []
        self.exceptions: list[BaseException] = []

    def on_train_start(self):
        self.events.append(("on_train_start",))

    def on_epoch_start(self, epoch):
        self.events.append(("on_epoch_start", epoch))

    def on_batch_start(self, epoch, batch_idx):
        self.events.append(("on_batch_start", epoch, batch_idx))

    def on_train_step_end(self, epoch, batch_idx, loss, metrics):
        self.events.append(("on_train_step_end", epoch, batch_idx))
        self.step_losses.append(loss)
        self.step_metrics.append(metrics)

    def on_batch_end(self, epoch, batch_idx):
        self.events.append(("on_batch_end", epoch, batch_idx))

    def on_validation_start(self, epoch):
        self.events.append(("on_validation_start", epoch))

    def on_validation_end(self, epoch, logs):
        self.events.append(("on_validation_end", epoch))
        self.validation_logs.append(dict(logs))

    def on_save_checkpoint(self, epoch):
        self.events.append(("on_save_checkpoint", epoch))

    def on_epoch_end(self, epoch, logs):
        self.events.append(("on_epoch_end", epoch))
        self.epoch_logs.append(dict(logs))

    def on_exception(self, exception):
        self.events.append(("on_exception", type(exception).__name__))
        self.exceptions.append(exception)

    def on_train_end(self):
        self.events.append(("on_train_end",))


def epoch_events(
    epoch: int, batches: int, validation: bool = True, saves: int = 0, batch_hooks: bool = True
) -> list[tuple[Any, ...]]:
    """The seed-000 events of one epoch: start, batches, validation, checkpoint saves, end."""
    events: list[tuple[Any, ...]] = [("on_epoch_start", epoch)]
    if batch_hooks:
        for b in range(batches):
            events += [("on_batch_start", epoch, b), ("on_train_step_end", epoch, b), ("on_batch_end", epoch, b)]
    if validation:
        events += [("on_validation_start", epoch), ("on_validation_end", epoch)]
    events += [("on_save_checkpoint", epoch)] * saves
    events.append(("on_epoch_end", epoch))
    return events


def hooks(events: Sequence[tuple[Any, ...]], *names: str) -> list[tuple[Any, ...]]:
    """The events of the hooks ``names`` only, in order."""
    return [e for e in events if e[0] in names]


def is_close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
