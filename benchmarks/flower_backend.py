"""Flower against Ray and sequential: what a client fit costs on real Flower SuperNodes, in one run.

One federation, one YAML, three runtimes (only ``backend`` differs): scikit-learn digits split IID
over N clients (``--nodes``), an MLP 64-128-10, SGD (lr 0.1), batch 32, one local epoch, every
client in every round, the global model evaluated after each round, one torch thread per process,
on CPU. Every run is the CLI's engine, ``federated.app.prepare_run(yaml).execute()``, with its
outputs (metrics.csv, TensorBoard, a checkpoint per round, final_weights.pt):

- ``sequential`` and ``ray`` (``RayBackend(num_workers=2)``, default requests) in this process, on
  one local Ray started here as ``benchmarks/backends.py`` starts it;
- ``flower`` under ``flwr run <app> --stream``, on a ``flower-superlink`` and N ``flower-supernode``
  processes on 127.0.0.1 (node i has ``partition-id=i``), started once, as the Flower tests start
  them (``Federation`` of ``tests/test_flower/conftest.py``), and stopped at the end whatever happens.

A server callback times the runs: ``FileClock``, the ``Clock`` of ``benchmarks/backends.py`` that
also writes what it measured to ``output_dir/clock.json``, since under Flower the server runs in
the SuperLink's ``flwr-serverapp`` process (which imports it from this file: its folder is put on
``PYTHONPATH``). The rounds are timed from ``on_train_start`` to ``on_train_end``; the start-up
from the launch (``prepare_run`` here, or ``flwr run``) to ``on_train_start``: for Flower the
ServerApp's start, its build of the federation and the SuperNodes' ``query``. The setups run in
turn, ``--repeats`` times, after a one-round warm-up of the two in-process ones, and the medians
are kept; every run must end with the first sequential run's final weights (``torch.equal``), or
the benchmark exits with an error. Printed per backend: the rounds' time, the time per client fit
(the rounds' time over N x rounds fits), its ratio to sequential, the start-up, and the whole run
(launch to return). First, the yardstick of ``benchmarks/backends.py``: the speed-up of two
pure-Python loops run at once over the same two run one after the other.

    python benchmarks/flower_backend.py [--rounds 3] [--repeats 3] [--nodes 2]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from backends import Clock, quiet, same_weights, start_local_ray, two_process_speedup  # benchmarks/backends.py

from federated.app import prepare_run

HERE = Path(__file__).resolve().parent
CONFTEST = HERE.parent / "tests" / "test_flower" / "conftest.py"  # Federation, write_app, write_yaml
CLOCK = "clock.json"  # FileClock's file, under each run's output_dir
SEQUENTIAL = "sequential"


class FileClock(Clock):
    """``Clock``, writing the wall time (``time.time``) the rounds started and their duration to ``path``."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.wall = 0.0

    def on_train_start(self) -> None:
        self.wall = time.time()
        super().on_train_start()

    def on_train_end(self) -> None:
        super().on_train_end()
        Path(self.path).write_text(json.dumps({"started": self.wall, "elapsed": self.elapsed}))


def load_kit() -> ModuleType:
    """The Flower tests' conftest, loaded by file path (it is not importable by name)."""
    spec = importlib.util.spec_from_file_location("lb_flower_kit", CONFTEST)
    assert spec is not None and spec.loader is not None
    kit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kit)
    return kit


def federation(nodes: int, rounds: int, out: Path, backend: dict[str, Any]) -> dict[str, Any]:
    """The YAML config of the federation measured, with ``backend``."""
    return {
        "seed": 0,
        "rounds": rounds,
        "output_dir": str(out),
        "threads": 1,
        "data": {"type": "digits", "num_clients": nodes, "partition": {"type": "iid"}, "batch_size": 32},
        "model": {"type": "mlp", "args": {"hidden": 128, "lr": 0.1}},
        "clients": {"per_round": nodes, "local_epochs": 1},
        "backend": backend,
        "trainer": {"accelerator": "cpu"},
        "callbacks": [{"type": "flower_backend:FileClock", "args": {"path": CLOCK}}],
    }


def outcome(out: Path, launched: float, returned: float) -> tuple[float, float, float, dict[str, torch.Tensor]]:
    """The rounds' time, the start-up, the whole run and the final weights of the run written to ``out``."""
    clock = json.loads((out / CLOCK).read_text())
    weights = torch.load(out / "final_weights.pt", weights_only=True)
    return clock["elapsed"], clock["started"] - launched, returned - launched, weights


def in_process(config: Path, out: Path, *overrides: str) -> tuple[float, float, float, dict[str, torch.Tensor]]:
    """Run ``config`` here, as the CLI does, with its outputs in ``out``."""
    launched = time.time()
    with contextlib.redirect_stderr(io.StringIO()):  # the CLI's line per round
        prepare_run(str(config), [f"output_dir={json.dumps(str(out))}", *overrides]).execute()
    return outcome(out, launched, time.time())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=2, help="SuperNodes, one client each")
    args = parser.parse_args()
    quiet()
    import flwr
    import ray

    kit = load_kit()
    ceiling = two_process_speedup(2)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    n, fits = args.nodes, args.nodes * args.rounds
    flower = f"flower, {n} SuperNodes"
    backends: dict[str, dict[str, Any]] = {
        SEQUENTIAL: {"type": "sequential"},
        "ray, 2 workers": {"type": "ray", "args": {"num_workers": 2}},
        flower: {"type": "flower", "args": {"timeout": 600}},
    }
    print(
        f"digits, {n} IID clients, MLP 64-128-10, batch 32, 1 local epoch, {args.rounds} rounds ({fits} client fits), "
        f"1 thread per process, CPU; torch {torch.__version__}, ray {ray.__version__}, flwr {flwr.__version__}, "
        f"{os.cpu_count()} CPUs; median of {args.repeats}"
    )
    print(
        f"setups, in turn: sequential and RayBackend(num_workers=2) in this process, one local Ray; flwr run on one "
        f"flower-superlink and {n} flower-supernode processes over 127.0.0.1 (insecure), up throughout"
    )
    print(f"yardstick: 2 CPU-bound processes at once finish {ceiling:.2f}x faster than one after the other")
    with tempfile.TemporaryDirectory(prefix="lb-flower-bench-") as tmp:
        root = Path(tmp)
        configs = {
            name: kit.write_yaml(root / f"backend{i}.yaml", federation(n, args.rounds, root / "out", backend))
            for i, (name, backend) in enumerate(backends.items())
        }
        app = kit.write_app(root / "app", configs[flower])
        fed = kit.Federation(root / "federation", nodes=n)
        try:
            ray_init = start_local_ray(2)
            started = time.perf_counter()
            fed.start()
            fed_up = time.perf_counter() - started
            for name in backends:  # warm-up: imports, the first Trainer, the first workers
                if name != flower:
                    in_process(configs[name], root / "warm-up", "rounds=1")
            reference: dict[str, torch.Tensor] | None = None
            runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in backends}
            for repeat in range(args.repeats):
                for i, name in enumerate(backends):
                    out = root / f"run{repeat}-{i}"
                    if name == flower:
                        launched = time.time()
                        fed.run(app, timeout=600, **{"output-dir": str(out)})
                        rounds_s, start_s, run_s, weights = outcome(out, launched, time.time())
                    else:
                        rounds_s, start_s, run_s, weights = in_process(configs[name], out)
                    reference = weights if reference is None else reference
                    if not same_weights(reference, weights):
                        raise SystemExit(f"{name}, run {repeat + 1}: final weights differ from the sequential run's")
                    runs[name].append((rounds_s, start_s, run_s))
        finally:
            fed.stop()
            ray.shutdown()
    medians = {name: [statistics.median(c) for c in zip(*values, strict=True)] for name, values in runs.items()}
    seq_rounds = medians[SEQUENTIAL][0]
    print(f"{'backend':<22} {'rounds s':>9} {'ms/client fit':>14} {'x sequential':>13} {'start s':>8} {'run s':>7}")
    for name, (rounds_s, start_s, run_s) in medians.items():
        print(
            f"{name:<22} {rounds_s:>9.2f} {rounds_s / fits * 1e3:>14.1f} {rounds_s / seq_rounds:>12.2f}x "
            f"{start_s:>8.2f} {run_s:>7.2f}"
        )
    print(
        f"the same final weights in all {args.repeats * len(backends)} runs (torch.equal); not counted: ray.init "
        f"{ray_init:.1f} s, the SuperLink and {n} SuperNodes up and registered {fed_up:.1f} s"
    )


if __name__ == "__main__":
    main()
