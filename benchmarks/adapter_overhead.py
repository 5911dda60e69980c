"""What running native callbacks through :class:`lightning_bridge.LightningCallbackAdapter` costs a fit.

An MLP on scikit-learn's digits, 20 epochs on the CPU, timed around ``Trainer.fit`` by this process's
CPU time (``time.process_time``: what the fit costs, less disturbed by other work on the machine than
the wall clock, which is printed too). Two ratios of medians, all fits in this process, interleaved
round by round:

(a) the five bridged built-ins (EarlyStopping, ModelCheckpoint, LRScheduler, TensorBoard,
    MetricsLogger) ÷ Lightning's own equivalents (EarlyStopping, ModelCheckpoint,
    LearningRateMonitor with the scheduler in ``configure_optimizers``, TensorBoardLogger,
    CSVLogger). Same work on both sides: the batch loss logged every step and the epoch metrics
    every epoch; a ``best`` checkpoint when ``val_loss`` improves and a ``last`` one every epoch;
    the same StepLR schedule. Target ≤ 1.05.
(b) a bridged callback overriding every hook with a no-op ÷ no callbacks at all. Target ≤ 1.03.
    For scale, the cost of any one callback in a Lightning fit is shown too: an empty
    ``lightning.pytorch.Callback`` (Lightning calls each of its hooks at every step).

Progress bars and the model summary are off everywhere; the sanity check is on everywhere.
Besides the ratio of medians, the median of the per-round ratios is printed: fits of one round
run back to back, so that figure is less sensitive to a busy machine. Last, the callback hooks
Lightning runs for one training step are timed alone (``timeit``, best of 7), for each setup: the
part of a step that callbacks cost, free of the training's own noise.

Run with ``python benchmarks/adapter_overhead.py [--repeat 7] [--epochs 20] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import platform
import statistics
import sys
import tempfile
import time
import timeit
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning
import torch
from lightning.pytorch import LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import Callback as LightningCallback
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.trainer import call as lightning_call
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from callbacks import HOOK_ARGUMENTS, Callback, EarlyStopping, LRScheduler, MetricsLogger, ModelCheckpoint, TensorBoard
from lightning_bridge import LightningCallbackAdapter

TARGET_BUILTINS = 1.05
TARGET_NOOP = 1.03
STEP_SIZE, GAMMA = 5, 0.5


class DigitsMLP(LightningModule):
    """64 -> 128 -> 10 with SGD; ``lightning_schedule`` puts the StepLR in ``configure_optimizers``."""

    def __init__(self, lightning_schedule: bool = False) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
        self.lightning_schedule = lightning_schedule

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", torch.nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        if not self.lightning_schedule:
            return optimizer
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=STEP_SIZE, gamma=GAMMA)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def _noop(self: Any, *args: Any, **kwargs: Any) -> None:
    return None


NoopEverywhere = type(
    "NoopEverywhere",
    (Callback,),
    {"__doc__": "Overrides every native hook with a no-op.", **{hook: _noop for hook in HOOK_ARGUMENTS}},
)


def digits_loaders(seed: int) -> tuple[DataLoader, DataLoader]:
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, val = order[:1437], order[1437:]
    shuffle = torch.Generator().manual_seed(seed)
    return (
        DataLoader(TensorDataset(x[train], y[train]), batch_size=64, shuffle=True, generator=shuffle),
        DataLoader(TensorDataset(x[val], y[val]), batch_size=128),
    )


def setup_none(out: Path) -> tuple[dict[str, Any], DigitsMLP]:
    return {"callbacks": [], "logger": False, "enable_checkpointing": False}, DigitsMLP()


def setup_empty(out: Path) -> tuple[dict[str, Any], DigitsMLP]:
    return {"callbacks": [LightningCallback()], "logger": False, "enable_checkpointing": False}, DigitsMLP()


def setup_noop(out: Path) -> tuple[dict[str, Any], DigitsMLP]:
    adapter = LightningCallbackAdapter([NoopEverywhere()])
    return {"callbacks": [adapter], "logger": False, "enable_checkpointing": False}, DigitsMLP()


def setup_bridged(out: Path) -> tuple[dict[str, Any], DigitsMLP]:
    natives = [
        EarlyStopping(patience=100, metric="val_loss", mode="min"),
        ModelCheckpoint(save_dir=str(out / "ckpt"), save_best=True, save_every=0, metric="val_loss", mode="min"),
        LRScheduler(scheduler_type="step", step_size=STEP_SIZE, gamma=GAMMA),
        TensorBoard(log_dir=str(out / "tb")),
        MetricsLogger(path=str(out / "metrics.csv")),
    ]
    kwargs = {"callbacks": [LightningCallbackAdapter(natives)], "logger": False, "enable_checkpointing": False}
    return kwargs, DigitsMLP()


def setup_lightning(out: Path) -> tuple[dict[str, Any], DigitsMLP]:
    callbacks = [
        LightningEarlyStopping(monitor="val_loss", mode="min", patience=100),
        LightningModelCheckpoint(dirpath=out / "ckpt", monitor="val_loss", mode="min", save_top_k=1, save_last=True),
        LearningRateMonitor(logging_interval="epoch"),
    ]
    loggers = [TensorBoardLogger(out, name="tb", version=0), CSVLogger(out, name="csv", version=0)]
    kwargs = {"callbacks": callbacks, "logger": loggers, "log_every_n_steps": 1}
    return kwargs, DigitsMLP(lightning_schedule=True)


SETUPS: dict[str, Callable[[Path], tuple[dict[str, Any], DigitsMLP]]] = {
    "no callbacks": setup_none,
    "empty Lightning cb": setup_empty,
    "bridged no-op": setup_noop,
    "bridged built-ins": setup_bridged,
    "Lightning built-ins": setup_lightning,
}


def time_fit(name: str, epochs: int, seed: int) -> tuple[float, float]:
    """Fit one setup; return the CPU time and the wall-clock time of ``Trainer.fit``, in seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        seed_everything(seed, verbose=False)
        kwargs, model = SETUPS[name](Path(tmp))
        trainer = Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            devices=1,
            enable_progress_bar=False,
            enable_model_summary=False,
            **kwargs,
        )
        train, val = digits_loaders(seed)
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        trainer.fit(model, train, val)
        return time.process_time() - cpu, time.perf_counter() - wall


def step_hooks_seconds(name: str) -> float:
    """Seconds per training step that Lightning spends in the callback hooks of this setup."""
    with tempfile.TemporaryDirectory() as tmp:
        kwargs, model = SETUPS[name](Path(tmp))
        quiet = {"enable_progress_bar": False, "enable_model_summary": False}
        trainer = Trainer(max_epochs=1, accelerator="cpu", **quiet, **kwargs)
        trainer.fit(model, *digits_loaders(0))
        loss = torch.tensor(0.5)
        optimizer = trainer.optimizers[0]
        hooks = (
            ("on_train_batch_start", (None, 0)),
            ("on_before_backward", (loss,)),
            ("on_after_backward", ()),
            ("on_before_optimizer_step", (optimizer,)),
            ("on_before_zero_grad", (optimizer,)),
            ("on_train_batch_end", ({"loss": loss}, None, 0)),
        )

        def one_step() -> None:
            for hook, args in hooks:
                lightning_call._call_callback_hooks(trainer, hook, *args)

        return min(timeit.repeat(one_step, number=2000, repeat=7)) / 2000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="timed fits per setup (after one warm-up round)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (fewer: less noise)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    names = list(SETUPS)
    times: dict[str, list[float]] = {name: [] for name in names}
    walls: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(args.repeat + 1):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]  # rotate: no fixed position
        for name in order:
            cpu, wall = time_fit(name, args.epochs, seed=round_index)
            if round_index:  # round 0 warms up imports, allocators and caches
                times[name].append(cpu)
                walls[name].append(wall)

    median = {name: statistics.median(values) for name, values in times.items()}
    print(
        f"adapter overhead: MLP on digits, {args.epochs} epochs, CPU ({platform.processor() or platform.machine()}, "
        f"{args.threads} thread{'s' if args.threads > 1 else ''}), median of {args.repeat} fits each"
    )
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, lightning {lightning.__version__}")
    print(f"  {'setup':<20} {'CPU time':>9} {'wall clock':>11}")
    for name in names:
        print(f"  {name:<20} {median[name]:8.3f}s {statistics.median(walls[name]):10.3f}s")
    for label, (num, den), target in (
        ("(a) bridged built-ins / Lightning built-ins", ("bridged built-ins", "Lightning built-ins"), TARGET_BUILTINS),
        ("(b) bridged no-op / no callbacks", ("bridged no-op", "no callbacks"), TARGET_NOOP),
        ("    empty Lightning cb / no callbacks", ("empty Lightning cb", "no callbacks"), None),
    ):
        ratio = median[num] / median[den]
        paired = statistics.median(a / b for a, b in zip(times[num], times[den], strict=True))
        verdict = "" if target is None else f"  (target <= {target}: {'ok' if ratio <= target else 'MISSED'})"
        print(f"{label:<46} = {ratio:.3f}, per round {paired:.3f}{verdict}")
    hook_us = {name: step_hooks_seconds(name) * 1e6 for name in names}
    steps = args.epochs * len(digits_loaders(0)[0])
    step_us = median["no callbacks"] / steps * 1e6
    print(f"callback hooks of one training step (the fit without callbacks: {step_us:.0f} µs CPU per step):")
    for name in names:
        extra = hook_us[name] - hook_us["no callbacks"]
        print(f"  {name:<20} {hook_us[name]:6.1f} µs  ({extra:+.1f} µs, {extra / step_us:+.1%} of a step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
