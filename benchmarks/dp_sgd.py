"""The cost of DP-SGD in a client fit: one client trained with ``PrivateTraining`` against the same fit without it.

One client of the scikit-learn digits (1437 training samples, batch 64: 23 batches a fit), the
built-in MLP 64-128-10 (SGD, lr 0.1), ``--epochs`` local epochs, one torch thread, one round of
one client per federation. The private fit computes per-sample gradients with Opacus's hooks,
clips each to norm 1, adds Gaussian noise (noise multiplier 1.0) and Poisson-samples its batches;
the plain fit is the same federation without the client algorithm. Both run in this process, in
turn, ``--repeats`` times after a warm-up of each; printed: the median seconds of each fit, the
ratio of the medians, and the median of the ratios of each repeat's back-to-back pair.

    python benchmarks/dp_sgd.py [--repeats 7] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader

from federated import MLP, FederatedTrainer, digits_federation
from federated.client import ClientAlgorithm, PrivateTraining
from federated.client.trainer_args import quiet_lightning


def one_fit(loader: DataLoader, epochs: int, algorithms: Sequence[ClientAlgorithm]) -> float:
    """Seconds of one federation of one round of one client fit."""
    torch.manual_seed(0)
    fed = FederatedTrainer(MLP(), [loader], rounds=1, local_epochs=epochs, client_algorithms=algorithms, seed=0)
    start = time.perf_counter()
    fed.fit()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaders, _ = digits_federation(num_clients=1, partition="iid", batch_size=64, seed=0)

    def private() -> list[ClientAlgorithm]:
        return [PrivateTraining(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5)]

    samples = len(loaders[0].dataset)  # type: ignore[arg-type]
    print(f"1 client x {samples} samples ({len(loaders[0])} batches), {args.epochs} epochs, "
          f"{torch.get_num_threads()} thread(s), median of {args.repeats}, load {os.getloadavg()[0]:.1f}")
    with quiet_lightning():
        one_fit(loaders[0], args.epochs, ())  # warm-up: imports, first Trainer, Opacus
        one_fit(loaders[0], args.epochs, private())
        plain, dp = [], []
        for _ in range(args.repeats):
            plain.append(one_fit(loaders[0], args.epochs, ()))
            dp.append(one_fit(loaders[0], args.epochs, private()))
    p, d = statistics.median(plain), statistics.median(dp)
    pairs = statistics.median(b / a for a, b in zip(plain, dp, strict=True))
    print(f"{'plain s':>8} {'dp-sgd s':>9} {'ratio':>6} {'pair ratio':>11}")
    print(f"{p:>8.3f} {d:>9.3f} {d / p:>6.2f} {pairs:>11.2f}")
    print(f"load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
