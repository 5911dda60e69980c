"""What writing the federation checkpoint costs at round 10 and at round 600.

A federation of tiny clients (10 clients of 16 random samples, 5 per round, an MLP 64-8-10, one
local epoch) runs with ``checkpoint_dir`` and a ``MetricsLogger``, as the CLI does. Each round's
``FederatedTrainer.save_checkpoint`` (``last.ckpt``, with whatever it keeps beside it) is timed.
Prints the median write time and the file size around round 10 and around the last round, and
their ratio against the round-10 baseline: 1.0 means the cost does not grow with the rounds run.

    python benchmarks/checkpoint_cost.py [--rounds 600] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import warnings

import torch
from torch.utils.data import DataLoader, TensorDataset

from callbacks import MetricsLogger
from federated import MLP, FederatedTrainer

WINDOW = 10  # rounds on either side of which the median is taken


class TimedTrainer(FederatedTrainer):
    """Records the wall time and the file size of each checkpoint write."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.writes: dict[int, tuple[float, int]] = {}

    def save_checkpoint(self, path: str | os.PathLike[str], weights_only: bool = False) -> str:
        start = time.perf_counter()
        written = super().save_checkpoint(path, weights_only)
        self.writes[self.current_round] = (time.perf_counter() - start, os.path.getsize(written))
        return written


def tiny_clients(num_clients: int = 10, samples: int = 16) -> list[DataLoader]:
    g = torch.Generator().manual_seed(0)
    sets = [
        TensorDataset(torch.rand(samples, 64, generator=g), torch.randint(0, 10, (samples,), generator=g))
        for _ in range(num_clients)
    ]
    return [DataLoader(data, batch_size=samples) for data in sets]


def window(writes: dict[int, tuple[float, int]], first: int) -> tuple[float, int]:
    """The median write time (ms) and the largest file size of rounds ``first .. first + WINDOW - 1``."""
    rounds = range(first, first + WINDOW)
    return statistics.median(writes[r][0] for r in rounds) * 1e3, max(writes[r][1] for r in rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=600)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("federated").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)")

    last = args.rounds + WINDOW // 2
    with tempfile.TemporaryDirectory() as out:
        torch.manual_seed(0)
        logger = MetricsLogger(os.path.join(out, "metrics.csv"))
        fed = TimedTrainer(
            MLP(hidden=8), tiny_clients(), rounds=last, clients_per_round=5, seed=0,
            checkpoint_dir=os.path.join(out, "checkpoints"), callbacks=[logger],
        )
        start = time.perf_counter()
        fed.fit()
        wall = time.perf_counter() - start
        beside = sorted(os.listdir(os.path.join(out, "checkpoints")))

    base_ms, _ = window(fed.writes, 10 - WINDOW // 2)
    print(f"{last} rounds of 5 tiny clients in {wall:.1f} s; checkpoint folder: {', '.join(beside)}")
    print(f"{'around round':>12}  {'median write':>12}  {'last.ckpt':>10}  {'ratio to round 10':>17}")
    for centre in (10, args.rounds):
        ms, size = window(fed.writes, centre - WINDOW // 2)
        print(f"{centre:>12}  {ms:>9.2f} ms  {size / 1024:>7.1f} KB  {ms / base_ms:>17.2f}")


if __name__ == "__main__":
    main()
