"""Federated evaluation: what a client's evaluation of the global model costs next to its fit, and on Ray.

The federation: scikit-learn digits split IID over 20 clients, each holding out 20 % of its
samples as its validation data (``val_fraction=0.2``), an MLP 64-128-10, SGD (lr 0.1), batch 32,
one local epoch, every client in every round, and federated evaluation on every client after
every round (``evaluate_clients=1.0``); one torch thread per process.

1. In one sequential run, each client fit and each client evaluation is timed as the backend
   yields it (``Trainer.fit`` on ~115 training samples with validation on ~29, against
   ``Trainer.validate`` on the ~29): the medians, in ms, and their ratio.
2. Sequential against ``RayBackend(num_workers=2)``, with the evaluation on and off: the rounds'
   time (``on_train_start`` to ``on_train_end``), median of ``--repeats`` runs taken in turn, the
   Ray speed-up, and what the evaluation adds per round on each backend. Every Ray run must end
   with the sequential weights and ``clients/accuracy`` (``torch.equal``, ``==``).

    python benchmarks/client_evaluation.py [--rounds 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

import torch
from backends import Clock, quiet, same_weights, start_local_ray  # benchmarks/backends.py

from federated import MLP, FederatedTrainer, RayBackend, SequentialBackend
from federated.data import digits_federation

NUM_CLIENTS = 20


class TimedSequential(SequentialBackend):
    """The sequential backend, timing each client fit and each client evaluation as it is yielded."""

    def __init__(self) -> None:
        super().__init__()
        self.fits: list[float] = []
        self.evaluations: list[float] = []

    def fit(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        yield from _timed(super().fit(*args, **kwargs), self.fits)

    def evaluate(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        yield from _timed(super().evaluate(*args, **kwargs), self.evaluations)


def _timed(outcomes: Iterator[Any], into: list[float]) -> Iterator[Any]:
    while True:
        started = time.perf_counter()
        try:
            outcome = next(outcomes)
        except StopIteration:
            return
        into.append(time.perf_counter() - started)
        yield outcome


def run(backend: Any, loaders: Any, rounds: int, evaluate: bool) -> tuple[float, Any]:
    torch.manual_seed(0)
    clock = Clock()
    fed = FederatedTrainer(
        MLP(in_features=64, hidden=128, num_classes=10, lr=0.1), loaders, None, rounds=rounds,
        clients_per_round=NUM_CLIENTS, seed=0, backend=backend, callbacks=[clock],
        evaluate_clients=1.0 if evaluate else None,
    )
    result = fed.fit()
    return clock.elapsed, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    quiet()
    import ray

    start_local_ray(2)
    loaders, _ = digits_federation(NUM_CLIENTS, "iid", val_fraction=0.2, test_fraction=0.2, seed=0)
    print(
        f"digits, {NUM_CLIENTS} IID clients (val_fraction 0.2), MLP 64-128-10, batch 32, 1 local epoch, every "
        f"client trains and evaluates each round; torch {torch.__version__}, ray {ray.__version__}, "
        f"{os.cpu_count()} CPUs"
    )

    timed = TimedSequential()
    run(timed, loaders, 1, evaluate=True)  # warm-up: imports, the first Trainer
    timed.fits.clear()
    timed.evaluations.clear()
    run(timed, loaders, args.rounds, evaluate=True)
    fit_ms, eval_ms = statistics.median(timed.fits) * 1e3, statistics.median(timed.evaluations) * 1e3
    print(
        f"1. same run, {len(timed.fits)} client fits and {len(timed.evaluations)} client evaluations (medians): "
        f"fit {fit_ms:.2f} ms, evaluation {eval_ms:.2f} ms, evaluation/fit {eval_ms / fit_ms:.2f}"
    )

    setups = [("sequential", "sequential"), ("ray, 2 workers", RayBackend(num_workers=2))]
    for _, backend in setups:  # warm-up: the first workers
        run(backend, loaders, 1, evaluate=True)
    times: dict[tuple[str, bool], list[float]] = {}
    reference: dict[bool, Any] = {}
    for _ in range(args.repeats):
        for name, backend in setups:
            for evaluate in (False, True):
                elapsed, result = run(backend, loaders, args.rounds, evaluate)
                times.setdefault((name, evaluate), []).append(elapsed)
                seen = reference.setdefault(evaluate, result)
                accuracy = seen.metrics.get("clients/accuracy") == result.metrics.get("clients/accuracy")
                if not (same_weights(seen.weights, result.weights) and accuracy):
                    raise SystemExit(f"{name}: the result differs from the sequential run's")
    median = {key: statistics.median(values) for key, values in times.items()}
    print(f"2. rounds' time, median of {args.repeats}, {args.rounds} rounds")
    print(f"{'backend':<16} {'no eval s':>10} {'eval s':>8} {'eval adds ms/round':>19} {'speed-up with eval':>19}")
    for name, _ in setups:
        off, on = median[(name, False)], median[(name, True)]
        speedup = median[("sequential", True)] / on
        print(f"{name:<16} {off:>10.2f} {on:>8.2f} {(on - off) / args.rounds * 1e3:>19.1f} {speedup:>18.2f}x")
    print("every Ray run ended with the sequential weights and clients/accuracy")
    ray.shutdown()


if __name__ == "__main__":
    main()
