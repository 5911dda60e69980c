"""Sequential against Ray: the same federation trained in this process and on a pool of Ray workers.

The K=50 digits federation: scikit-learn digits split IID over 50 clients, an MLP 64-128-10,
SGD (lr 0.1), batch 32, one local epoch, every client in every round, the global model evaluated
after each round; one torch thread per process. It runs with ``backend="sequential"`` and with
``RayBackend(num_workers=2)``: with one client per Ray request, five, and the default (a
worker's whole share of the round in one request, for a model this small).

Training time is measured from ``on_train_start`` to ``on_train_end``: the rounds, without the
start-up of each ``fit`` (new Ray workers import torch and Lightning), which is reported apart.
One local Ray serves every run, started here as ``RayBackend`` starts one (workers at the
driver's priority, ``RAY_worker_niceness``). The setups run in turn, ``--repeats`` times, so that
all see the same load on a shared machine, and the median is kept; every run must end with the
sequential run's weights (``torch.equal``). Printed per setup: the training time, the time per
client fit, the speed-up over sequential, and the cost per client fit over an ideal split of the
sequential time across the workers, ``(t - t_seq / workers) / fits``. First, as a yardstick of
what the machine gives two processes at the moment, the speed-up of two pure-Python loops run at
once over the same two run one after the other.

    python benchmarks/backends.py [--rounds 10] [--repeats 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import time
import warnings
from typing import Any

import torch

from callbacks import Callback
from federated import MLP, FederatedTrainer, RayBackend, digits_federation

NUM_CLIENTS = 50
NICENESS = "RAY_worker_niceness"  # Ray's default, 15, puts its workers behind every other process
LOOP = "import time; t = time.perf_counter(); sum(range(20_000_000)); print(time.perf_counter() - t)"


class Clock(Callback):
    """The wall time between ``on_train_start`` and ``on_train_end``: the rounds alone."""

    def __init__(self) -> None:
        self.started = self.elapsed = 0.0

    def on_train_start(self) -> None:
        self.started = time.perf_counter()

    def on_train_end(self) -> None:
        self.elapsed = time.perf_counter() - self.started


def run(backend: Any, loaders: Any, test: Any, rounds: int) -> tuple[float, float, dict[str, torch.Tensor]]:
    """Train once; the rounds' time, the whole ``fit`` time, and the final weights."""
    torch.manual_seed(0)
    clock = Clock()
    fed = FederatedTrainer(
        MLP(in_features=64, hidden=128, num_classes=10, lr=0.1), loaders, test, rounds=rounds,
        clients_per_round=NUM_CLIENTS, seed=0, backend=backend, callbacks=[clock],
    )
    start = time.perf_counter()
    result = fed.fit()
    return clock.elapsed, time.perf_counter() - start, result.weights


def start_local_ray(num_cpus: int) -> float:
    """Start a local Ray of ``num_cpus`` as ``RayBackend`` starts one (workers at the driver's priority).

    Returns the seconds ``ray.init`` took.
    """
    import ray

    os.environ[NICENESS] = "0"
    started = time.perf_counter()
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return time.perf_counter() - started


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Whether two state dicts hold the same tensors, bit for bit."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def quiet() -> None:
    """Run as every backend benchmark runs: one torch thread, no info logs of the federation, no warnings."""
    torch.set_num_threads(1)
    logging.getLogger("federated").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")


def two_process_speedup(workers: int) -> float:
    """How much faster ``workers`` CPU-bound processes finish at once than one after the other, right now."""

    def loops(count: int) -> list[float]:
        procs = [subprocess.Popen([sys.executable, "-c", LOOP], stdout=subprocess.PIPE) for _ in range(count)]
        return [float(p.communicate()[0]) for p in procs]

    alone = sum(loops(1)[0] for _ in range(workers))
    return alone / max(loops(workers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    quiet()
    import ray

    ceiling = two_process_speedup(args.workers)
    ray_init = start_local_ray(args.workers)
    loaders, test = digits_federation(num_clients=NUM_CLIENTS, partition="iid", batch_size=32, seed=0)
    fits = NUM_CLIENTS * args.rounds
    w = args.workers
    setups: list[tuple[str, Any]] = [
        ("sequential", "sequential"),
        (f"ray, {w} workers, 1 client/request", RayBackend(num_workers=w, clients_per_call=1)),
        (f"ray, {w} workers, 5 clients/request", RayBackend(num_workers=w, clients_per_call=5)),
        (f"ray, {w} workers, default requests", RayBackend(num_workers=w)),
    ]
    print(
        f"digits, {NUM_CLIENTS} IID clients, MLP 64-128-10, batch 32, 1 local epoch, {args.rounds} rounds "
        f"({fits} client fits); torch {torch.__version__}, ray {ray.__version__}, {os.cpu_count()} CPUs; "
        f"median of {args.repeats}"
    )
    print(f"yardstick: {w} CPU-bound processes at once finish {ceiling:.2f}x faster than one after the other")
    for _, backend in setups:  # warm-up: imports, the first Trainer, the first workers
        run(backend, loaders, test, 1)
    reference: dict[str, torch.Tensor] | None = None
    times: dict[str, list[float]] = {name: [] for name, _ in setups}
    totals: dict[str, list[float]] = {name: [] for name, _ in setups}
    for _ in range(args.repeats):
        for name, backend in setups:
            elapsed, total, weights = run(backend, loaders, test, args.rounds)
            reference = weights if reference is None else reference
            if not same_weights(reference, weights):
                raise SystemExit(f"{name}: the final weights differ from the sequential run's")
            times[name].append(elapsed)
            totals[name].append(total)
    seq_time = statistics.median(times["sequential"])
    print(f"{'backend':<34} {'train s':>8} {'ms/client fit':>14} {'speed-up':>9} {'cost/fit ms':>12} {'start s':>8}")
    for name, _ in setups:
        train, total = statistics.median(times[name]), statistics.median(totals[name])
        workers = 1 if name == "sequential" else w
        cost = (train - seq_time / workers) / fits * 1e3
        print(
            f"{name:<34} {train:>8.2f} {train / fits * 1e3:>14.2f} {seq_time / train:>8.2f}x {cost:>12.2f} "
            f"{total - train:>8.2f}"
        )
    print(f"same final weights as sequential in every run (torch.equal); ray.init took {ray_init:.1f} s")
    ray.shutdown()


if __name__ == "__main__":
    main()
