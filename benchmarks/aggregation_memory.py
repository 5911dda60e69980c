"""Peak extra memory of FedAvg aggregation as the number of client updates K grows.

A model state of about 10M float32 parameters (40 MB). The updates are generated lazily, one at
a time, and each is dropped once folded in, as the round loop does, so the benchmark holds no K
models itself. Each measurement runs in a fresh process: the peak resident set size (``ru_maxrss``)
minus the resident size just before aggregating. The streaming FedAvg should stay flat (the
float64 running sum, 80 MB, plus one update, plus the result); holding every update first, as
Flower's ``aggregate`` and NVFlare do, grows by one model per client.

    python benchmarks/aggregation_memory.py              # K = 10, 100, 1000 streaming; 10, 30 held
    python benchmarks/aggregation_memory.py --ks 10 100  # fewer
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator

import torch

from federated import ClientUpdate, FedAvg
from federated.strategies.aggregate import weighted_average_reference

SHAPES = {f"layer{i}.weight": (1000, 1000) for i in range(10)} | {f"layer{i}.bias": (1000,) for i in range(10)}
NUM_PARAMS = sum(torch.Size(s).numel() for s in SHAPES.values())


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def updates(k: int) -> Iterator[ClientUpdate]:
    """K client updates, made one at a time (each a fresh 40 MB state)."""
    for i in range(k):
        weights = {name: torch.full(shape, float(i % 7)) for name, shape in SHAPES.items()}
        yield ClientUpdate(client_id=i, num_samples=1 + i % 5, weights=weights)


def worker(mode: str, k: int) -> dict[str, float]:
    torch.set_num_threads(1)
    template = {name: torch.zeros(shape) for name, shape in SHAPES.items()}
    before = rss_mb()
    start = time.perf_counter()
    if mode == "streaming":
        strategy = FedAvg()
        strategy.begin_round(1, template)
        for update in updates(k):
            strategy.accumulate(update)
            update.weights = None  # the round loop releases each update once folded in
        result = strategy.finish_round()
    else:  # hold every update, then average
        held = list(updates(k))
        result = weighted_average_reference((u.weights, u.num_samples) for u in held)  # type: ignore[misc]
        del held
    seconds = time.perf_counter() - start
    assert result.keys() == template.keys()
    return {"extra_mb": peak_rss_mb() - before, "seconds": seconds}


def measure(mode: str, k: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", mode, "--k", str(k)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 100, 1000], help="K values for streaming FedAvg")
    parser.add_argument("--held-ks", type=int, nargs="*", default=[10, 30], help="K values holding every update")
    parser.add_argument("--worker", choices=["streaming", "held"], help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.k)))
        return
    model_mb = NUM_PARAMS * 4 / 2**20
    print(f"model: {NUM_PARAMS / 1e6:.2f}M float32 parameters = {model_mb:.0f} MB per update")
    print(f"{'mode':>10} {'K':>6} {'peak extra MB':>14} {'x model':>8} {'seconds':>8}")
    for mode, ks in (("streaming", args.ks), ("held", args.held_ks)):
        for k in ks:
            m = measure(mode, k)
            print(f"{mode:>10} {k:>6} {m['extra_mb']:>14.0f} {m['extra_mb'] / model_mb:>8.1f} {m['seconds']:>8.1f}")


if __name__ == "__main__":
    main()
