"""Helpers of the CLI tests: run ``python -m lightning_bridge.fed`` as a subprocess in a directory.

Every subprocess pays the imports (torch, Lightning: a few seconds on a small machine), so the
tests share runs through module-scoped fixtures and keep federations tiny (few rounds, a
16-unit MLP, one torch thread).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from federated.app.run_dir import write_manifest

CLI = [sys.executable, "-m", "lightning_bridge.fed"]
REPO = Path(__file__).resolve().parents[2]


def small_config(**overrides: Any) -> dict[str, Any]:
    """A federation that trains in a fraction of a second: 4 IID digits clients, 2 per round, 3 rounds."""
    config: dict[str, Any] = {
        "seed": 0,
        "rounds": 3,
        "threads": 1,
        "output_dir": "out",
        "data": {"type": "digits", "num_clients": 4, "partition": {"type": "iid"}, "batch_size": 64},
        "model": {"type": "mlp", "args": {"hidden": 16}},
        "clients": {"per_round": 2},
    }
    config.update(overrides)
    return config


def write_config(path: Path, config: dict[str, Any] | str) -> Path:
    """Write ``config`` (a dict, or YAML text as is) to ``path`` and return ``path``."""
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
    return path


def cli_env() -> dict[str, str]:
    """The environment of a CLI subprocess: ``python -m`` puts the working directory on ``sys.path``."""
    env = dict(os.environ)
    env.pop("PYTHONSAFEPATH", None)  # would keep the working directory off sys.path
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ beside the user modules of a test
    return env


def run_cli(cwd: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the CLI in ``cwd`` with ``args`` and wait for it."""
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def read_metrics(path: Path) -> list[dict[str, str]]:
    """The rows of a ``metrics.csv``, values as written."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def scalars(log_dir: Path, tag: str) -> list[tuple[int, float]]:
    """The ``(step, value)`` points of a TensorBoard scalar in the event files of ``log_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``directory``: its bytes and modification time (ns), by relative path."""
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


EARLIER_EVENTS = "events.out.tfevents.1700000000.host.1.0"
"""The name of an event file of an earlier run, as torch's SummaryWriter names them."""


EARLIER_OUTPUTS = {
    ".": [r"config\.yaml", r"final_weights\.pt", r"metrics\.csv"],
    "checkpoints": [r"last\.ckpt", r"history\.jsonl"],
    "tensorboard": [r"events\.out\.tfevents\..+"],
}
"""The files an earlier run's manifest names (see :mod:`federated.app.run_dir`)."""


def populate(directory: Path) -> None:
    """Fill ``directory`` as an earlier run left it: its manifest, metrics, a checkpoint, events."""
    (directory / "checkpoints").mkdir(parents=True)
    write_manifest(str(directory), EARLIER_OUTPUTS)
    (directory / "metrics.csv").write_text("round,accuracy\n1,0.5\n2,0.6\n")
    (directory / "tensorboard").mkdir()
    (directory / "checkpoints" / "last.ckpt").write_bytes(b"an earlier run's checkpoint")
    (directory / "tensorboard" / EARLIER_EVENTS).write_bytes(b"events")
    (directory / "final_weights.pt").write_bytes(b"weights")
