"""What a run leaves in its output directory, and a run killed with SIGKILL then resumed with ``--resume auto``."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml
from cli_helpers import (
    CLI,
    EARLIER_EVENTS,
    cli_env,
    populate,
    read_metrics,
    run_cli,
    scalars,
    small_config,
    write_config,
)

from federated.app.config import load_config
from federated.progress import RoundProgress
from lightning_bridge.fed import main

PAUSE = '''
import time

from callbacks import Callback


class Pause(Callback):
    """Makes each round last long enough to be killed in the middle of the run."""

    def __init__(self, seconds: float = 0.1) -> None:
        self.seconds = seconds

    def on_round_end(self):
        time.sleep(self.seconds)
'''

ROUNDS = 8
CONFIG: dict[str, Any] = {
    "seed": 3,
    "rounds": ROUNDS,
    "threads": 1,
    "data": {"type": "digits", "num_clients": 6, "partition": {"type": "dirichlet", "alpha": 0.5}, "batch_size": 64},
    "model": {"type": "mlp", "args": {"hidden": 16, "lr": 0.3}},
    "clients": {"per_round": 3},
    # SCAFFOLD: the server's and each client's control variates must survive the kill too
    "strategy": {"type": "scaffold", "args": {"eta_g": 1.0}},
    "callbacks": [
        {"type": "model_checkpoint", "args": {"save_dir": "ckpt", "save_every": 4}},
        # configured before the pause, these write round r before the checkpoints of round r: a kill in
        # the pause loses round r, which the resumed run computes and writes again
        {"type": "metrics_logger", "args": {"path": "metrics.csv"}},
        {"type": "tensorboard", "args": {"log_dir": "tb"}},
        {"type": "slow:Pause", "args": {"seconds": 0.1}},
    ],
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("runs")
    (cwd / "slow.py").write_text(PAUSE)
    write_config(cwd / "fed.yaml", CONFIG)
    return cwd


@pytest.fixture(scope="module")
def full(workdir: Path) -> Path:
    """An uninterrupted run, in ``full/``."""
    proc = run_cli(workdir, "--config", "fed.yaml", "--output-dir", "full")
    assert proc.returncode == 0, proc.stderr
    return workdir / "full"


@pytest.fixture(scope="module")
def resumed(workdir: Path) -> tuple[Path, int, subprocess.CompletedProcess[str]]:
    """The same run in ``resumed/``, killed with SIGKILL once 3 rounds are in metrics.csv, then resumed.

    The kill most likely lands in the pause of round 3, after its metrics and events, before its checkpoints.

    Returns the directory, the rounds in metrics.csv when it was killed, and the resuming process.
    """
    out = workdir / "resumed"
    proc = subprocess.Popen(
        [*CLI, "--config", "fed.yaml", "--output-dir", "resumed"],
        cwd=workdir, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    rows_at_kill = 0
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if (out / "metrics.csv").exists():
            rows_at_kill = len(read_metrics(out / "metrics.csv"))
            if rows_at_kill >= 3:
                os.kill(proc.pid, signal.SIGKILL)
                break
        time.sleep(0.01)
    status = proc.wait(timeout=60)
    if status != -signal.SIGKILL:
        pytest.fail(f"the run was to be killed after 3 rounds; it ended with status {status} after {rows_at_kill}")
    return out, rows_at_kill, run_cli(workdir, "--config", "fed.yaml", "--output-dir", "resumed", "--resume", "auto")


def control_variates(checkpoint: Path) -> dict[str, torch.Tensor]:
    """SCAFFOLD's variates in a federation checkpoint: the server's ``c`` and every client's ``c_i``."""
    saved = torch.load(checkpoint, weights_only=True)
    out = {f"server {k}": v for k, v in saved["strategy"]["c"].items()}
    for client_id, state in saved["clients"].items():
        out.update({f"client {client_id} {k}": v for k, v in state["algorithms"]["scaffold"]["c_i"].items()})
    return out


def test_fed_output_directory_layout(full: Path) -> None:
    rows = read_metrics(full / "metrics.csv")
    header = (full / "metrics.csv").read_text().splitlines()[0].split(",")
    weights = torch.load(full / "final_weights.pt", weights_only=True)
    last = torch.load(full / "checkpoints" / "last.ckpt", weights_only=True)
    saved = yaml.safe_load((full / "config.yaml").read_text())

    assert header[0] == "round" and {"accuracy", "val_loss", "train_loss"} <= set(header[1:])
    assert [int(r["round"]) for r in rows] == list(range(1, ROUNDS + 1))
    assert [step for step, _ in scalars(full / "tensorboard", "accuracy")] == list(range(1, ROUNDS + 1))
    assert [v for _, v in scalars(full / "tensorboard", "accuracy")] == pytest.approx(
        [float(r["accuracy"]) for r in rows]
    )
    assert last["round"] == ROUNDS
    assert sorted(weights) == ["net.0.bias", "net.0.weight", "net.2.bias", "net.2.weight"]
    assert weights["net.0.weight"].shape == (16, 64)
    assert all(torch.equal(weights[k], last["weights"][k]) for k in weights)
    assert load_config(full / "config.yaml") == saved  # the resolved config is complete and valid
    assert saved["output_dir"] == "full" and saved["callbacks"] == CONFIG["callbacks"]


def test_fed_relative_callback_paths_land_under_the_output_directory(full: Path) -> None:
    assert sorted(p.name for p in (full / "ckpt").iterdir()) == [
        "best.ckpt", "history.jsonl", "last.ckpt", "round=0004.ckpt", "round=0008.ckpt"
    ]
    assert [step for step, _ in scalars(full / "tb", "accuracy")] == list(range(1, ROUNDS + 1))


def test_fed_resume_after_sigkill_matches_an_uninterrupted_run(
    full: Path, resumed: tuple[Path, int, subprocess.CompletedProcess[str]]
) -> None:
    out, rows_at_kill, proc = resumed

    expected, weights = read_metrics(full / "metrics.csv"), torch.load(full / "final_weights.pt", weights_only=True)
    got = read_metrics(out / "metrics.csv")
    resumed_weights = torch.load(out / "final_weights.pt", weights_only=True)
    assert proc.returncode == 0, proc.stderr
    assert 3 <= rows_at_kill < ROUNDS
    assert "resuming after round " in proc.stderr
    assert [int(r["round"]) for r in got] == list(range(1, ROUNDS + 1))  # each round exactly once
    assert got == expected  # row by row, the same values as written
    assert sorted(resumed_weights) == sorted(weights)
    assert all(torch.equal(resumed_weights[k], weights[k]) for k in weights)
    variates, resumed_variates = (control_variates(d / "checkpoints" / "last.ckpt") for d in (full, out))
    assert sorted(resumed_variates) == sorted(variates) and "server net.0.weight" in variates
    assert all(torch.equal(resumed_variates[k], variates[k]) for k in variates)
    for log_dir in ("tensorboard", "tb"):  # rounds logged before the kill and run again are not doubled
        assert scalars(out / log_dir, "accuracy") == scalars(full / log_dir, "accuracy")


def test_fed_runs_with_different_output_directories_never_mix(
    workdir: Path, full: Path, resumed: tuple[Path, int, subprocess.CompletedProcess[str]]
) -> None:
    assert sorted(p.name for p in workdir.iterdir()) == ["fed.yaml", "full", "resumed", "slow.py"]
    for out in (full, resumed[0]):
        assert yaml.safe_load((out / "config.yaml").read_text())["output_dir"] == out.name
        assert sorted(p.name for p in (out / "ckpt").iterdir()) == [
            "best.ckpt", "history.jsonl", "last.ckpt", "round=0004.ckpt", "round=0008.ckpt"
        ]
        assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) >= 1


def _overwrite(cwd: Path, output_dir: str, log_dir: str) -> int:
    """Run one round with ``--overwrite`` in ``cwd``: outputs in ``output_dir``, TensorBoard events in ``log_dir``."""
    config = small_config(rounds=1, output_dir=output_dir)
    config["callbacks"] = [{"type": "tensorboard", "args": {"log_dir": log_dir}}]
    write_config(cwd / "fed.yaml", config)
    return main(["--config", "fed.yaml", "--overwrite"])


def test_fed_new_run_with_overwrite_keeps_what_it_did_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: an earlier run's outputs, a folder of the user's where a callback logs, older experiments
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs" / "digits"
    populate(out)
    (out / "sentinel.txt").write_text("keep me")
    (out / "mydata").mkdir()
    (out / "mydata" / "important.txt").write_text("the user's")
    (out / "mydata" / EARLIER_EVENTS).write_bytes(b"an earlier run's events")
    (out / "checkpoints" / "last.ckpt.bak").write_bytes(b"the user's copy")
    (out / "checkpoints" / "notes.txt").write_text("the user's")
    (tmp_path / "runs" / "older").mkdir()
    (tmp_path / "runs" / "older" / "metrics.csv").write_text("round\n1\n")

    # Execute
    status = _overwrite(tmp_path, output_dir="runs/digits", log_dir="mydata")

    # Assert: the project's files are this run's; everything else is there as it was
    assert status == 0
    assert (out / "mydata" / "important.txt").read_text() == "the user's"
    assert (out / "checkpoints" / "last.ckpt.bak").read_bytes() == b"the user's copy"
    assert (out / "checkpoints" / "notes.txt").exists() and (out / "sentinel.txt").exists()
    assert (tmp_path / "runs" / "older" / "metrics.csv").read_text() == "round\n1\n"
    assert not (out / "mydata" / EARLIER_EVENTS).exists() and not (out / "tensorboard" / EARLIER_EVENTS).exists()
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["round"] == 1
    assert [int(r["round"]) for r in read_metrics(out / "metrics.csv")] == [1]
    assert [step for step, _ in scalars(out / "mydata", "accuracy")] == [1]


def test_fed_new_run_with_overwrite_in_the_working_directory_keeps_older_experiments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: `output_dir: .` and `log_dir: runs`, with earlier experiments under ./runs
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "digits" / "checkpoints").mkdir(parents=True)
    (tmp_path / "runs" / "digits" / "checkpoints" / "last.ckpt").write_bytes(b"another experiment")
    (tmp_path / "runs" / "digits" / "metrics.csv").write_text("round\n1\n")

    # Execute
    status = _overwrite(tmp_path, output_dir=".", log_dir="runs")

    # Assert
    assert status == 0
    assert (tmp_path / "runs" / "digits" / "checkpoints" / "last.ckpt").read_bytes() == b"another experiment"
    assert (tmp_path / "runs" / "digits" / "metrics.csv").read_text() == "round\n1\n"
    assert [step for step, _ in scalars(tmp_path / "runs", "accuracy")] == [1]


def test_round_progress_line_labels_the_round_time_and_the_total() -> None:
    stream = io.StringIO()
    progress = RoundProgress(rounds=2, stream=stream)
    progress.on_train_start(trainer=SimpleNamespace(current_round=0))
    for round_num in (1, 2):
        time.sleep(0.02)
        result = SimpleNamespace(metrics={"accuracy": 0.5}, updates=[object()], failures=[])
        progress.on_round_end(trainer=None, round_num=round_num, result=result)
    lines = stream.getvalue().splitlines()
    timings = [re.search(r"took (\d+\.\d\d)s  total (\d+\.\d)s$", line) for line in lines]
    assert all(timings), lines
    assert all(float(t.group(1)) >= 0.02 for t in timings if t)  # each round's own time
