"""Big clients: FederatedTrainer against a naive loop of fresh ``lightning.Trainer(...).fit`` per client.

10 clients of 2000 samples each (the scikit-learn digits drawn with replacement, a seeded draw
per client), batch 32 (63 batches a fit), one local epoch, every client in each of 3 rounds, an
MLP 64-128-10 trained with SGD (lr 0.1), one torch thread. The naive loop is what a Lightning
user writes by hand: per client a fresh ``Trainer`` (no logger, checkpoints, progress bar or
summary, as the client trainer) fits a plain ``LightningModule`` of the same layers from the
global weights, the updates averaged by sample count; with server evaluation each round ends
with a fresh ``Trainer(...).validate`` on the test split, as FederatedTrainer evaluates it.
Both run in this process, in turn, ``--repeats`` times (so both see the same load); printed: the
median seconds of each, with and without server evaluation, the ratio of the medians, and the
median of the ratios of each repeat's back-to-back pair (steadier while the load moves).

``--threads-report`` prints instead the threads alive in this process (Python's and the OS's)
during a client fit of each loop, and the torch thread settings.

    python benchmarks/round_overhead.py --big-clients [--repeats 5] [--threads-report]
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the usual alias
from torch.utils.data import DataLoader, TensorDataset

from federated import MLP, FederatedTrainer, digits_federation
from federated.client.trainer_args import quiet_lightning

CLIENTS, SAMPLES, ROUNDS, BATCH, LR = 10, 2000, 3, 32, 0.1
NAIVE_TRAINER = {
    "max_epochs": 1, "accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
    "enable_progress_bar": False, "enable_model_summary": False,
}


class PlainMLP(LightningModule):
    """The MLP 64-128-10 as a user writes it: SGD, cross-entropy, validation loss and accuracy."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", F.cross_entropy(logits, y), batch_size=len(y))
        self.log("accuracy", (logits.argmax(1) == y).float().mean(), batch_size=len(y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=LR)


def big_federation(seed: int = 0) -> tuple[list[DataLoader], DataLoader]:
    """``CLIENTS`` shuffling loaders of ``SAMPLES`` digits each, and the test loader."""
    loaders, test = digits_federation(num_clients=1, partition="iid", batch_size=BATCH, seed=seed)
    dataset = loaders[0].dataset
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])  # type: ignore[arg-type]
    y = torch.tensor([int(dataset[i][1]) for i in range(len(dataset))])  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(seed)
    clients = []
    for _ in range(CLIENTS):
        drawn = torch.randint(len(y), (SAMPLES,), generator=generator)
        clients.append(DataLoader(TensorDataset(x[drawn], y[drawn]), batch_size=BATCH, shuffle=True))
    assert test is not None
    return clients, test


class ThreadsSeen(Callback):
    """Records the threads alive at the middle of the first training epoch it sees."""

    def __init__(self) -> None:
        self.seen: tuple[list[str], int] | None = None

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.seen is None and batch_idx == 30:
            self.seen = (sorted(t.name for t in threading.enumerate()), len(os.listdir("/proc/self/task")))


def run_federated(loaders: Sequence[DataLoader], test: DataLoader | None, seed: int = 0) -> float:
    torch.manual_seed(seed)
    fed = FederatedTrainer(MLP(lr=LR), loaders, test, rounds=ROUNDS, clients_per_round=len(loaders), seed=seed)
    start = time.perf_counter()
    fed.fit()
    return time.perf_counter() - start


def run_naive(
    loaders: Sequence[DataLoader], test: DataLoader | None, seed: int = 0, callbacks: Sequence[Callback] = ()
) -> float:
    """FedAvg by hand, a fresh ``lightning.Trainer`` per client fit (and per evaluation)."""
    torch.manual_seed(seed)
    model = PlainMLP()
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    start = time.perf_counter()
    with quiet_lightning():
        for _ in range(ROUNDS):
            sums = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in weights.items()}
            for loader in loaders:
                model.load_state_dict(weights)
                Trainer(**NAIVE_TRAINER, callbacks=list(callbacks)).fit(model, loader)
                for k, v in model.state_dict().items():
                    sums[k].add_(v.detach(), alpha=len(loader.dataset))  # type: ignore[arg-type]
            total = sum(len(loader.dataset) for loader in loaders)  # type: ignore[arg-type]
            weights = {k: (s / total).to(weights[k].dtype) for k, s in sums.items()}
            if test is not None:
                model.load_state_dict(weights)
                Trainer(**NAIVE_TRAINER).validate(model, test, verbose=False)
    return time.perf_counter() - start


def threads_report() -> None:
    """The threads alive during a client fit of each loop, and torch's thread settings."""
    loaders, test = big_federation()
    fed_seen, naive_seen = ThreadsSeen(), ThreadsSeen()
    torch.manual_seed(0)
    FederatedTrainer(MLP(lr=LR), loaders[:1], test, rounds=1, trainer_kwargs={"callbacks": [fed_seen]}).fit()
    run_naive(loaders[:1], test, callbacks=[naive_seen])
    print(f"torch intra-op threads {torch.get_num_threads()}, inter-op threads {torch.get_num_interop_threads()}")
    for name, seen in (("federated", fed_seen.seen), ("naive", naive_seen.seen)):
        assert seen is not None
        print(f"{name:>9}: {seen[1]} OS threads; Python threads {seen[0]}")


def big_clients(repeats: int) -> None:
    """Median seconds of both loops, with and without server evaluation, and their ratio."""
    loaders, test = big_federation()
    print(f"{CLIENTS} clients x {SAMPLES} samples ({len(loaders[0])} batches), {ROUNDS} rounds, "
          f"{torch.get_num_threads()} thread(s), median of {repeats}, load {os.getloadavg()[0]:.1f}")
    print(f"{'server evaluation':>17} {'naive s':>8} {'federated s':>12} {'ratio':>6} {'pair ratio':>11}")
    for evaluate in (False, True):
        held = test if evaluate else None
        run_federated(loaders[:1], held)  # warm-up: imports, first Trainer, allocator
        run_naive(loaders[:1], held)
        fed, naive = [], []
        for _ in range(repeats):
            fed.append(run_federated(loaders, held))
            naive.append(run_naive(loaders, held))
        f, n = statistics.median(fed), statistics.median(naive)
        pairs = statistics.median(a / b for a, b in zip(fed, naive, strict=True))
        print(f"{'yes' if evaluate else 'no':>17} {n:>8.2f} {f:>12.2f} {f / n:>6.2f} {pairs:>11.2f}")
    print(f"load at the end {os.getloadavg()[0]:.1f}")
