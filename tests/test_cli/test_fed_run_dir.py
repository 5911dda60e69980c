"""The output directory's rules: one run at a time, its own files only, writers under it, checked before any write."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import CLI, cli_env, populate, read_metrics, run_cli, small_config, snapshot, write_config

from lightning_bridge.fed import main

HOLD = '''
import time

from callbacks import Callback


class Hold(Callback):
    """Holds the run in round 2 (at most two minutes), so that a second run finds it running."""

    def on_round_end(self, round_num):
        deadline = time.monotonic() + 120
        while round_num == 2 and time.monotonic() < deadline:
            time.sleep(0.05)
'''

BLOCKER = '''
import os

from callbacks import Callback


class Blocker(Callback):
    """Puts a folder where the run's metrics.csv goes, once the run has started."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_start(self):
        os.makedirs(os.path.join(os.path.dirname(self.path), "metrics.csv"))
'''


def _error(err: str) -> str:
    """The one ``error:`` line of ``err``."""
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def test_fed_second_run_in_a_running_directory_exits_2_naming_the_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a CLI process held in round 2, after its checkpoint of round 1
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "hold.py").write_text(HOLD)
    write_config(tmp_path / "fed.yaml", small_config(rounds=2, callbacks=[{"type": "hold:Hold"}]))
    out = tmp_path / "out"
    first = subprocess.Popen(
        [*CLI, "--config", "fed.yaml"], cwd=tmp_path, env=cli_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoints" / "last.ckpt").exists() and first.poll() is None:
            assert time.monotonic() < deadline, "the first run wrote no checkpoint"
            time.sleep(0.05)

        # Execute: the same command, and a resume, in this process while the first run goes on
        again = main(["--config", "fed.yaml"])
        again_err = capsys.readouterr().err
        resumed = main(["--config", "fed.yaml", "--resume", "auto"])
        resumed_err = capsys.readouterr().err
        running = first.poll() is None
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)

    # Assert: both refused in one line naming the first run's process; after its kill, its lock blocks nothing
    assert running
    for status, err in ((again, again_err), (resumed, resumed_err)):
        assert status == 2, err
        assert f"is in use by another run (pid {first.pid} " in _error(err)
    assert main(["--config", "fed.yaml", "--resume", "auto", "--set", "callbacks=[]"]) == 0
    assert [int(row["round"]) for row in read_metrics(out / "metrics.csv")] == [1, 2]


@pytest.mark.parametrize(
    ("planted", "expected"),
    [
        ("checkpoints", "error: output_dir: 'checkpoints' is a file, where a folder of the round loop"),
        ("config.yaml/", "error: output_dir: 'config.yaml' is a folder, where a file of the resolved config"),
        ("metrics.csv/", "error: output_dir: 'metrics.csv' is a folder, where a file of the run's MetricsLogger"),
        ("tensorboard", "error: output_dir: 'tensorboard' is a file, where a folder of the run's TensorBoard"),
    ],
)
@pytest.mark.parametrize("validate", [True, False])
def test_fed_file_or_folder_in_the_way_is_refused_before_anything_is_removed(
    planted: str, expected: str, validate: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Prepare: an earlier run's outputs, and a file (or a folder) where this run writes the other
    monkeypatch.chdir(tmp_path)
    populate(tmp_path / "out")
    target = tmp_path / "out" / planted.rstrip("/")
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    (target.mkdir() if planted.endswith("/") else target.write_text("in the way"))
    write_config(tmp_path / "c.yaml", small_config(rounds=1))
    before = snapshot(tmp_path)

    # Execute
    status = main(["--config", "c.yaml", *(["--validate"] if validate else [])])

    # Assert
    assert status == 2
    assert _error(capsys.readouterr().err).startswith(expected)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("planted", "callbacks", "named"),
    [
        (["config.yaml", "metrics.csv", "final_weights.pt"], [], "'config.yaml'"),
        (["checkpoints/best.ckpt", "checkpoints/last.ckpt"], [], "'checkpoints/best.ckpt'"),
        (["tensorboard/events.out.tfevents.1700000000.other.1.0"], [], "'tensorboard/events.out.tfevents."),
        (["notes.txt"], [{"type": "metrics_logger", "args": {"path": "notes.txt"}}], "'notes.txt'"),
    ],
)
def test_fed_new_run_refuses_a_directory_holding_files_it_did_not_write(
    planted: list[str], callbacks: list[Any], named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Prepare: the user's files (or another tool's) in the output directory, no manifest of a run there
    monkeypatch.chdir(tmp_path)
    for name in planted:
        (tmp_path / "out" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "out" / name).write_text("the user's")
    write_config(tmp_path / "c.yaml", small_config(rounds=1, callbacks=callbacks))
    before = snapshot(tmp_path)

    # Execute
    status = main(["--config", "c.yaml"])

    # Assert: refused in one line naming a file and the ways on; nothing written
    err = _error(capsys.readouterr().err)
    assert status == 2
    assert err.startswith(f"error: output_dir: 'out' holds {named}"), err
    assert all(way in err for way in ("--resume auto", "another output_dir", "--overwrite")), err
    assert snapshot(tmp_path) == before


def test_fed_new_run_replaces_an_earlier_run_of_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path / "c.yaml", small_config(rounds=2))
    assert main(["--config", "c.yaml"]) == 0

    status = main(["--config", "c.yaml", "--set", "rounds=1"])

    assert status == 0
    assert [int(row["round"]) for row in read_metrics(tmp_path / "out" / "metrics.csv")] == [1]


@pytest.mark.parametrize(
    ("entry", "expected", "parts"),
    [
        ({"type": "model_checkpoint", "args": {"save_dir": "."}},
         "callbacks[0].args.save_dir: '.' is output_dir itself", ()),
        ({"type": "model_checkpoint", "args": {"save_dir": "linked"}},
         "callbacks[0].args.save_dir: 'linked' leads outside output_dir, through a symbolic link", ()),
        ({"type": "tensorboard", "args": {"log_dir": "ABSOLUTE"}}, "callbacks[0].args.log_dir: '/",
         ("leads outside output_dir", "an absolute path is taken only under output_dir")),
        ({"type": "metrics_logger", "args": {"path": "config.yaml"}},
         "callbacks[0].args.path: 'config.yaml' is written",
         ("the resolved config", "`callbacks[0].args.path` (MetricsLogger)")),
        ({"type": "metrics_logger", "args": {"path": "checkpoints/history.jsonl"}}, "callbacks[0].args.path: ",
         ("the round loop's history log", "`callbacks[0].args.path` (MetricsLogger)")),
        ({"type": "metrics_logger", "args": {"path": ""}}, "callbacks[0].args.path: '' names nothing", ()),
        ({"type": "metrics_logger", "args": {"path": "."}}, "callbacks[0].args.path: '.' is output_dir itself", ()),
        ({"type": "metrics_logger", "args": {"path": "tensorboard"}},
         "callbacks[0].args.path: 'tensorboard' is written",
         ("the run's TensorBoard",)),
    ],
)
def test_fed_writer_path_outside_the_run_or_clashing_is_a_config_error(
    entry: dict[str, Any], expected: str, parts: tuple[str, ...], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # Prepare: an earlier run's outputs, and a folder elsewhere that out/linked leads to
    monkeypatch.chdir(tmp_path)
    populate(tmp_path / "out")
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "out" / "linked")
    elsewhere = str(tmp_path / "elsewhere")
    args = {k: elsewhere if v == "ABSOLUTE" else v for k, v in entry["args"].items()}
    write_config(tmp_path / "c.yaml", small_config(rounds=1, callbacks=[{**entry, "args": args}]))
    before = snapshot(tmp_path)

    # Execute
    status = main(["--config", "c.yaml"])

    # Assert
    err = _error(capsys.readouterr().err)
    assert status == 2
    assert err.startswith(f"error: {expected}"), err
    assert all(part in err for part in parts), err
    assert snapshot(tmp_path) == before


def test_fed_symlinked_checkpoints_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: the run's own checkpoints/ a link to a folder elsewhere holding files of the same names
    monkeypatch.chdir(tmp_path)
    populate(tmp_path / "out")
    shutil.rmtree(tmp_path / "out" / "checkpoints")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "last.ckpt").write_text("another run's")
    os.symlink(tmp_path / "elsewhere", tmp_path / "out" / "checkpoints")
    write_config(tmp_path / "c.yaml", small_config(rounds=1))
    before = snapshot(tmp_path)

    status = main(["--config", "c.yaml", "--overwrite"])

    err = _error(capsys.readouterr().err)
    assert status == 2
    assert err.startswith("error: output_dir: 'checkpoints' leads outside output_dir, through a symbolic link"), err
    assert snapshot(tmp_path) == before


def test_fed_writer_that_cannot_write_fails_the_run(tmp_path: Path) -> None:
    # Prepare: a callback that puts a folder where metrics.csv goes once the checks have passed
    (tmp_path / "blocker.py").write_text(BLOCKER)
    blocker = {"type": "blocker:Blocker", "args": {"path": "x"}}
    write_config(tmp_path / "c.yaml", small_config(rounds=1, callbacks=[blocker]))

    proc = run_cli(tmp_path, "--config", "c.yaml")

    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "MetricsLogger did not write" in errors[0], proc.stderr


@pytest.mark.parametrize("validate", [True, False])
def test_fed_ray_gpus_the_machine_lacks_are_refused_before_anything_is_removed(
    validate: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: an earlier run's outputs, and a local Ray cluster asked for a GPU per worker on a machine without one
    monkeypatch.chdir(tmp_path)
    populate(tmp_path / "out")
    ray = {"type": "ray", "args": {"num_workers": 2, "num_gpus_per_client": 1}}
    write_config(tmp_path / "c.yaml", small_config(rounds=1, backend=ray, trainer={"accelerator": "gpu"}))
    before = snapshot(tmp_path)

    # Execute
    status = main(["--config", "c.yaml", *(["--validate"] if validate else [])])

    # Assert: refused in one line naming the key and the GPUs found, every earlier file kept
    assert status == 2
    err = _error(capsys.readouterr().err)
    assert err.startswith("error: backend.args.num_gpus_per_client: 1 for each of `num_workers=2` workers needs 2 GPUs")
    assert "and this machine has 0" in err
    assert snapshot(tmp_path) == before
