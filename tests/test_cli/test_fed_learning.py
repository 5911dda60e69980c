"""The CLI trains: the default and the robust examples learn, early stopping ends a run, user callbacks run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from cli_helpers import REPO, read_metrics, run_cli, small_config, write_config

RECORDER = '''
import os

from callbacks import Callback


class Recorder(Callback):
    """Appends one line per federation event to `path`."""

    def __init__(self, path: str = "events.txt") -> None:
        self.path = path

    def _write(self, line: str) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(self.path, "a") as f:
            f.write(line + "\\n")

    def on_train_start(self, trainer):
        self._write(f"start clients={len(trainer.clients)}")

    async def on_round_end(self, trainer, round_num, result, **kwargs):
        self._write(f"round {round_num} accuracy={result.metrics['accuracy']:.4f}")

    def on_train_end(self, result):
        self._write(f"end rounds={len(result.history)} stopped_early={result.stopped_early}")
'''


def test_fed_learns_the_default_example(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "--config", str(REPO / "examples" / "fed.yaml"), "--output-dir", "digits")

    rows = read_metrics(tmp_path / "digits" / "metrics.csv")
    assert proc.returncode == 0, proc.stderr
    assert [int(r["round"]) for r in rows] == list(range(1, 21))
    assert float(rows[-1]["accuracy"]) >= 0.90
    assert float(rows[0]["accuracy"]) < 0.6  # it learned in the federation, not before
    assert "round  20/20" in proc.stderr  # one progress line per round when not on a terminal
    assert "rounds run: 20 of 20\nbest accuracy: " in proc.stdout
    assert "outputs: digits" in proc.stdout


def test_fed_learns_the_robust_example(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "--config", str(REPO / "examples" / "robust.yaml"), "--output-dir", "robust")

    rows = read_metrics(tmp_path / "robust" / "metrics.csv")
    saved = yaml.safe_load((tmp_path / "robust" / "config.yaml").read_text())
    assert proc.returncode == 0, proc.stderr
    assert saved["strategy"] == {"type": "multikrum", "args": {"num_malicious_nodes": 2, "num_nodes_to_select": 9}}
    assert [int(r["round"]) for r in rows] == list(range(1, 11))
    assert float(rows[-1]["accuracy"]) >= 0.90  # 0.956 here


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """10 rounds planned; no round can improve accuracy by `min_delta: 1.0`, so patience 2 ends it after round 3."""
    cwd = tmp_path_factory.mktemp("stopped")
    (cwd / "my_callbacks.py").write_text(RECORDER)
    config = small_config(
        rounds=10,
        callbacks=[
            {"type": "early_stopping", "args": {"patience": 2, "metric": "accuracy", "mode": "max", "min_delta": 1.0}},
            {"type": "my_callbacks:Recorder", "args": {"path": "events.txt"}},
        ],
    )
    write_config(cwd / "c.yaml", config)
    return cwd, run_cli(cwd, "--config", "c.yaml")


def test_fed_early_stopping_ends_the_run_with_status_0(
    stopped_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    cwd, proc = stopped_run

    rows = read_metrics(cwd / "out" / "metrics.csv")
    assert proc.returncode == 0, proc.stderr
    assert [int(r["round"]) for r in rows] == [1, 2, 3]
    assert "rounds run: 3 of 10 (stopped early by a callback)" in proc.stdout


def test_fed_user_callback_by_import_path_from_the_working_directory(
    stopped_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    cwd, proc = stopped_run

    events = (cwd / "out" / "events.txt").read_text().splitlines()  # its relative `path` went under output_dir
    accuracies = [r["accuracy"] for r in read_metrics(cwd / "out" / "metrics.csv")]
    assert proc.returncode == 0, proc.stderr
    assert events[0] == "start clients=4"
    assert events[1:4] == [f"round {i} accuracy={float(a):.4f}" for i, a in enumerate(accuracies, start=1)]
    assert events[4:] == ["end rounds=3 stopped_early=True"]
    assert not (cwd / "events.txt").exists()
