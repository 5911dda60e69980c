"""A small, real training run whose callbacks are native ones, dispatched by ``CallbackManager``.

A two-layer network learns scikit-learn's handwritten digits in a plain PyTorch loop that fires
the hooks in the order of a native training engine (seed 000). The built-in callbacks are built
from YAML with ``build_callbacks``; two hand-written ones show the two native styles: a plain
``def`` with seed-000 signatures and an ``async def`` with seed-003 signatures.

Run it with ``make demo`` (or ``python examples/demo.py``); files land under ``runs/demo/``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import torch
import yaml
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the usual name
from torch.utils.data import DataLoader, TensorDataset

from callbacks import Callback, CallbackManager, build_callbacks

CONFIG = """
callbacks:
  - type: early_stopping
    args: {patience: 3, metric: val_loss, mode: min, min_delta: 0.001}
  - type: model_checkpoint
    args: {save_dir: "{out}/checkpoints", save_every: 5, metric: accuracy, mode: max}
  - type: lr_scheduler
    args: {scheduler_type: cosine, T_max: 20}
  - type: metrics_logger
    args: {path: "{out}/metrics.csv"}
  - type: tensorboard
    args: {log_dir: "{out}/tensorboard"}
"""


class PrintProgress(Callback):
    """A seed-000 callback: plain ``def`` hooks that name only the arguments they use."""

    def on_train_start(self):
        print("training a 64-64-10 network on the digits data set")
        self.saved = []

    def on_save_checkpoint(self, epoch, path):
        self.saved.append(os.path.basename(path))

    def on_epoch_end(self, epoch, logs):
        saved = f"  saved {', '.join(self.saved)}" if self.saved else ""
        print(
            f"epoch {epoch:2d}  avg_loss {logs['avg_loss']:.3f}  val_loss {logs['val_loss']:.3f}  "
            f"accuracy {logs['accuracy']:.3f}  lr {logs['lr']:.4f}{saved}"
        )
        self.saved.clear()


class AsyncTimer(Callback):
    """A seed-003 callback: ``async def`` hooks taking ``**kwargs``, awaited in order."""

    async def on_train_start(self, trainer, **kwargs):
        self.started = time.perf_counter()

    async def on_epoch_end(self, learner, epoch, metrics, **kwargs):
        await asyncio.sleep(0)  # an async hook may wait on I/O; the loop runs it to completion

    async def on_train_end(self, trainer, result, **kwargs):
        print(f"{len(result)} epochs in {time.perf_counter() - self.started:.1f} s")


class DemoEngine:
    """The smallest trainer the built-ins need: ``should_stop``, ``optimizers``, ``save_checkpoint``."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model = model
        self.optimizers = [optimizer]
        self.should_stop = False
        self.is_global_zero = True
        self.written: list[str] = []

    def save_checkpoint(self, path: str) -> None:
        """Write atomically: a temporary file, then a rename."""
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp"
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizers[0].state_dict()}, tmp)
        os.replace(tmp, path)
        self.written.append(path)


def fit(engine: DemoEngine, manager: CallbackManager, train: DataLoader, val: DataLoader, epochs: int) -> list:
    """Train, firing the native hooks in the seed-000 order."""
    model, optimizer = engine.model, engine.optimizers[0]
    history: list[dict[str, float]] = []
    manager.call("on_train_start", trainer=engine)
    try:
        for epoch in range(epochs):
            manager.call("on_epoch_start", trainer=engine, epoch=epoch, learner=model)
            model.train()
            losses = []
            for batch_idx, (x, y) in enumerate(train):
                manager.call("on_batch_start", trainer=engine, epoch=epoch, batch_idx=batch_idx)
                optimizer.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                optimizer.step()
                losses.append(loss.detach())
                step = {"epoch": epoch, "batch_idx": batch_idx, "loss": loss.detach(), "metrics": {}}
                manager.call("on_train_step_end", trainer=engine, **step)
                manager.call("on_batch_end", trainer=engine, epoch=epoch, batch_idx=batch_idx)
            manager.call("on_validation_start", trainer=engine, epoch=epoch)
            val_logs = evaluate(model, val)
            manager.call("on_validation_end", trainer=engine, epoch=epoch, logs=val_logs)
            for path in engine.written:
                manager.call("on_save_checkpoint", trainer=engine, epoch=epoch, path=path)
            engine.written.clear()
            logs = {"avg_loss": torch.stack(losses).mean().item(), **val_logs}
            manager.call("on_epoch_end", trainer=engine, epoch=epoch, logs=logs, metrics=logs, learner=model)
            history.append(logs)
            if engine.should_stop:
                break
    except Exception as exc:
        manager.call("on_exception", trainer=engine, exception=exc)
        raise
    finally:
        manager.call("on_train_end", trainer=engine, result=history)
    return history


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader) -> dict[str, float]:
    model.eval()
    total, loss, correct = 0, 0.0, 0
    for x, y in loader:
        out = model(x)
        loss += F.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(dim=1) == y).sum().item()
        total += len(y)
    return {"val_loss": loss / total, "accuracy": correct / total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train on the digits data set with native callbacks.")
    parser.add_argument("--epochs", type=int, default=20, help="most epochs to train (default: 20)")
    parser.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y))
    train_idx, val_idx = order[:1400], order[1400:]
    train = DataLoader(TensorDataset(x[train_idx], y[train_idx]), batch_size=64, shuffle=True)
    val = DataLoader(TensorDataset(x[val_idx], y[val_idx]), batch_size=256)

    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    engine = DemoEngine(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    config: dict[str, Any] = yaml.safe_load(CONFIG.replace("{out}", args.out))
    native = [*build_callbacks(config["callbacks"]), PrintProgress(), AsyncTimer()]
    manager = CallbackManager(native)

    history = fit(engine, manager, train, val, args.epochs)

    early_stopping = native[0]
    best = max(history, key=lambda logs: logs["accuracy"])
    if early_stopping.stopped_at is not None:
        print(f"early stopping at epoch {early_stopping.stopped_at}: no better val_loss for 3 epochs")
    print(f"best accuracy {best['accuracy']:.3f}; metrics, TensorBoard events and checkpoints in {args.out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
