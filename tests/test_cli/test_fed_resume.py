"""``--resume``: which checkpoint, what a resume may change, and a run directory resumed wherever it is.

The runs are tiny and run ``main`` in this process; one finished 3-round run is copied for each test.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_helpers import EARLIER_OUTPUTS, read_metrics, scalars, small_config, snapshot, write_config

import federated.checkpoint
from federated.app.run_dir import write_manifest
from lightning_bridge.fed import main

BEST_KEY = "ModelCheckpoint{'metric': 'accuracy', 'mode': 'max'}"
"""The state key of the model_checkpoint of :data:`CONFIG`."""

CONFIG = small_config(
    output_dir="runs/x",
    callbacks=[{"type": "model_checkpoint", "args": {"save_dir": "ckpt", "save_every": 1, "save_last": False}}],
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A working directory with ``fed.yaml`` and the finished 3-round run it describes, in ``runs/x``."""
    cwd = tmp_path_factory.mktemp("finished")
    write_config(cwd / "fed.yaml", CONFIG)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        assert main(["--config", "fed.yaml"]) == 0
    yield cwd


@pytest.fixture
def workdir(finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the finished run's working directory, as the working directory."""
    cwd = tmp_path / "work"
    shutil.copytree(finished, cwd)
    monkeypatch.chdir(cwd)
    return cwd


def _rounds(out: Path) -> list[int]:
    return [int(row["round"]) for row in read_metrics(out / "metrics.csv")]


@pytest.mark.parametrize("spelling", ["./runs/x", "absolute", "copied", "moved"])
def test_fed_resume_finds_the_run_directory_however_it_is_spelled_or_wherever_it_went(
    spelling: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    out = workdir / "runs" / "x"
    if spelling == "copied":
        shutil.copytree(out, workdir / "runs" / "copy")
        out = workdir / "runs" / "copy"
    elif spelling == "moved":
        out = (workdir / "runs" / "x").rename(workdir / "elsewhere")
    where = {"./runs/x": "./runs/x", "absolute": str(out)}.get(spelling, str(out.relative_to(workdir)))

    # Execute
    status = main(["--config", "fed.yaml", "--output-dir", where, "--resume", "auto", "--set", "rounds=4"])

    # Assert: the fourth round follows the three, each once, in metrics.csv and TensorBoard
    err = capsys.readouterr().err
    assert status == 0, err
    assert "resuming after round 3 from " in err
    assert _rounds(out) == [1, 2, 3, 4]
    # (files one process opens within a second sort by torch's file counter as text, ``.10`` before ``.9``)
    assert sorted(step for step, _ in scalars(out / "tensorboard", "accuracy")) == [1, 2, 3, 4]
    best = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"][BEST_KEY]["best_path"]
    assert best == os.path.join("ckpt", "best.ckpt") and (out / best).is_file()  # relative to the run directory


@pytest.mark.parametrize("damage", ["deleted", "cut"])
def test_fed_resume_refuses_a_lost_history_log_naming_the_older_checkpoints(
    damage: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: the round loop's history log deleted, or cut after its first round
    log = workdir / "runs" / "x" / "checkpoints" / "history.jsonl"
    if damage == "deleted":
        log.unlink()
    else:
        log.write_text(log.read_text().splitlines(keepends=True)[0] + '{"round_num": 2, "cut')
    before = snapshot(workdir)

    # Execute
    status = main(["--config", "fed.yaml", "--resume", "auto", "--set", "rounds=4"])

    # Assert: refused before config.yaml is rewritten, naming the checkpoints --resume PATH can take
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("error: --resume: "), err
    assert "'runs/x/checkpoints/history.jsonl'" in err and "'runs/x/checkpoints/last.ckpt'" in err
    assert "can take: 'runs/x/ckpt/round=0003.ckpt' (round 3), " in err, err
    assert snapshot(workdir) == before


def test_fed_resume_auto_takes_the_latest_round_not_the_newest_file(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: best.ckpt holds round 1 and is the newest file, as after a `cp -r` that wrote it last
    ckpt = workdir / "runs" / "x" / "ckpt"
    shutil.copyfile(ckpt / "round=0001.ckpt", ckpt / "best.ckpt")

    # Execute
    status = main(["--config", "fed.yaml", "--resume", "auto", "--set", "rounds=4"])

    # Assert
    err = capsys.readouterr().err
    assert status == 0, err
    assert "resuming after round 3 from runs/x/checkpoints/last.ckpt" in err
    assert _rounds(workdir / "runs" / "x") == [1, 2, 3, 4]


def test_fed_resume_reads_the_checkpoint_and_its_history_log_once(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: count the reads of each checkpoint (torch.load) and history log (opened to read)
    reads: Counter[str] = Counter()
    real_load, real_open = torch.load, open

    def counting_load(f: Any, *args: Any, **kwargs: Any) -> Any:
        reads[os.path.relpath(getattr(f, "name", f))] += 1
        return real_load(f, *args, **kwargs)

    def counting_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if os.path.basename(file) == "history.jsonl" and "r" in mode:
            reads[os.path.relpath(file)] += 1
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    monkeypatch.setattr(federated.checkpoint, "open", counting_open, raising=False)

    # Execute
    status = main(["--config", "fed.yaml", "--resume", "auto", "--set", "rounds=4"])

    # Assert: the checkpoint resumed and its log were each read once, to choose it and to restore from it
    err = capsys.readouterr().err
    assert status == 0, err
    assert "resuming after round 3 from runs/x/checkpoints/last.ckpt" in err
    chosen = os.path.join("runs", "x", "checkpoints")
    assert reads[os.path.join(chosen, "last.ckpt")] == 1, reads
    assert reads[os.path.join(chosen, "history.jsonl")] == 1, reads
    assert _rounds(workdir / "runs" / "x") == [1, 2, 3, 4]


@pytest.mark.parametrize("left", ["nothing", "a config only", "a damaged last.ckpt only"])
def test_fed_resume_auto_starts_afresh_without_a_valid_checkpoint(
    left: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a run killed before its output directory existed, before its first checkpoint, or in a bad disk
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path / "fed.yaml", CONFIG)
    out = tmp_path / "runs" / "x"
    if left != "nothing":
        out.mkdir(parents=True)
        write_manifest(str(out), EARLIER_OUTPUTS)  # a run writes its manifest first
        write_config(out / "config.yaml", CONFIG)
    if left == "a damaged last.ckpt only":
        (out / "checkpoints").mkdir()
        (out / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 cut short")

    # Execute
    status = main(["--config", "fed.yaml", "--resume", "auto"])

    # Assert
    err = capsys.readouterr().err
    assert status == 0, err
    assert "no valid checkpoint under runs/x: starting afresh" in err
    assert _rounds(out) == [1, 2, 3]


def test_fed_resume_auto_refuses_a_damaged_last_checkpoint_naming_the_valid_ones(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: last.ckpt cut in half
    last = workdir / "runs" / "x" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    before = snapshot(workdir)

    # Execute
    status = main(["--config", "fed.yaml", "--resume", "auto", "--set", "rounds=4"])

    # Assert
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("error: --resume: "), err
    assert "'runs/x/checkpoints/last.ckpt'" in err
    assert err.endswith(
        "; valid checkpoints that `--resume PATH` can take: 'runs/x/ckpt/round=0003.ckpt' (round 3), "
        "'runs/x/ckpt/best.ckpt' (round 3), 'runs/x/ckpt/round=0002.ckpt' (round 2), "
        "'runs/x/ckpt/round=0001.ckpt' (round 1)\n"
    ), err
    assert snapshot(workdir) == before


def test_fed_resume_warns_of_each_changed_key(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    status = main(
        ["--config", "fed.yaml", "--resume", "auto", "--set", "rounds=4", "--set", "model.args.lr=0.05",
         "--set", "strategy.type=fedavgm"]
    )

    # Assert
    err = capsys.readouterr().err.splitlines()
    assert status == 0, err
    assert [line for line in err if line.startswith("warning:")] == [
        "warning: resuming with rounds 4 (was 3)",
        "warning: resuming with model.args.lr 0.05 (was None)",
        "warning: resuming with strategy.type 'fedavgm' (was 'fedavg')",
    ]
    assert _rounds(workdir / "runs" / "x") == [1, 2, 3, 4]


REFUSED = [
    ("num-clients", ["data.num_clients=5"], True, "data.num_clients: 5, but the run resumed has 4"),
    ("seed", ["seed=1"], True, "seed: 1, but the run resumed has 0"),
    ("partition", ["data.partition.type=dirichlet"], True, "data.partition.type: 'dirichlet', but the run resumed"),
    ("test-fraction", ["data.test_fraction=0.3"], True, "data.test_fraction: 0.3, but the run resumed has 0.2"),
    ("model-type", ["model.type=federated.models:MLP"], True, "model.type: 'federated.models:MLP', but the run"),
    ("model-shape", ["model.args.hidden=32"], True, "model.args.hidden: the model does not fit the weights in"),
    ("num-clients-no-config", ["data.num_clients=5"], False, "data.num_clients: 5 clients, but"),
    ("model-shape-no-config", ["model.args.hidden=32"], False, "model.args: the model does not fit the weights in"),
    ("seed-no-config", ["seed=1"], False, "seed: 1, but 'runs/x/checkpoints/last.ckpt' is from a run with seed 0"),
    ("callbacks", ["callbacks=[]"], True, "callbacks: 'runs/x/checkpoints/last.ckpt' holds the state of callback"),
]


@pytest.mark.parametrize(("sets", "keep_config", "expected"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_fed_resume_refuses_what_it_cannot_continue_before_writing(
    sets: list[str], keep_config: bool, expected: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: with the resolved config of the run resumed, or (deleted) with its checkpoint alone
    if not keep_config:
        (workdir / "runs" / "x" / "config.yaml").unlink()
    before = snapshot(workdir)

    # Execute
    status = main(["--config", "fed.yaml", "--resume", "auto", *(a for s in sets for a in ("--set", s))])

    # Assert
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and len(err) < 600, err
    assert err.startswith(f"error: {expected}"), err
    assert snapshot(workdir) == before
