"""Determinism and resume: a run killed at any point and resumed ends with the same weights."""

from __future__ import annotations

import csv
import json
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from federated_helpers import AdaptiveSelection

from callbacks import Callback, EarlyStopping, LRScheduler, MetricsLogger, ModelCheckpoint
from federated import MLP, CheckpointError, FederatedTrainer, FederationResult


class Crash(BaseException):
    """Stands for a kill: not an Exception, so no error policy swallows it."""


class CrashAt(Callback):
    def __init__(self, hook: str, round_num: int) -> None:
        self.hook, self.round_num = hook, round_num

    def on_round_start(self, round_num: int) -> None:
        if self.hook == "round_start" and round_num == self.round_num:
            raise Crash

    def on_epoch_end(self, epoch: int, round_num: int | None = None) -> None:
        if self.hook == "client_returned" and round_num == self.round_num:
            raise Crash  # mid-round: a client has trained, aggregation has not happened


class ClientLocalDecay(Callback):
    """A client callback with state that changes training: each fit of this client uses a smaller LR."""

    def __init__(self) -> None:
        self.fits = 0

    def state_dict(self) -> dict[str, Any]:
        return {"fits": self.fits}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.fits = state_dict["fits"]

    def on_train_start(self, trainer: Any) -> None:
        for group in trainer.optimizers[0].param_groups:
            group["lr"] *= 0.8**self.fits
        self.fits += 1


class CrashAfterSaving(Callback):
    """Stands for a kill right after the file ``name`` was written, before the round's ``last.ckpt``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def on_save_checkpoint(self, path: str) -> None:
        if Path(path).name == self.name:
            raise Crash


class CheckpointSizes(Callback):
    """Records the size of each ``last.ckpt`` written."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def on_save_checkpoint(self, path: str) -> None:
        if Path(path).name == "last.ckpt":
            self.sizes.append(Path(path).stat().st_size)


class CtrlCInThirdFit(MLP):
    """A Ctrl-C during the third client fit: the first of round 2, with two clients a round."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fits = 0

    def on_fit_start(self) -> None:
        self.fits += 1

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.fits == 3:
            raise KeyboardInterrupt


def run(make_model: Callable[..., MLP], digits4: Any, checkpoint_dir: Path, seed: int = 0,
        extra: list[Callback] | None = None, resume: str | Path | None = None,
        ) -> tuple[FederationResult, FederatedTrainer]:
    loaders, test = digits4
    callbacks = [
        AdaptiveSelection(),
        LRScheduler(scheduler_type="step", step_size=2, gamma=0.5),
        EarlyStopping(patience=20, metric="accuracy"),
        MetricsLogger(path=None),
        *(extra or []),
    ]
    fed = FederatedTrainer(
        make_model(), loaders, test, rounds=5, clients_per_round=2, seed=seed, callbacks=callbacks,
        client_callbacks=[ClientLocalDecay()], checkpoint_dir=checkpoint_dir, on_error="raise",
    )
    return fed.fit(resume_from=resume), fed


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, digits4: Any) -> FederationResult:
    def make(seed: int = 0) -> MLP:
        torch.manual_seed(seed)
        return MLP(hidden=16)

    torch.set_num_threads(1)
    return run(make, digits4, tmp_path_factory.mktemp("uninterrupted"))[0]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_same_seed_same_weights(
    uninterrupted: FederationResult, make_model: Callable[..., MLP], digits4: Any, tmp_path: Path
) -> None:
    again, _ = run(make_model, digits4, tmp_path / "a")
    other, _ = run(make_model, digits4, tmp_path / "b", seed=1)
    assert_same_weights(again.weights, uninterrupted.weights)
    assert [r.selected for r in again.history] == [r.selected for r in uninterrupted.history]
    assert not torch.equal(other.weights["net.0.weight"], uninterrupted.weights["net.0.weight"])


@pytest.mark.parametrize(("hook", "round_num"), [("round_start", 1), ("round_start", 4), ("client_returned", 3)])
def test_resume_equals_uninterrupted(
    uninterrupted: FederationResult, make_model: Callable[..., MLP], digits4: Any, tmp_path: Path,
    hook: str, round_num: int,
) -> None:
    # Prepare: a run killed at `hook` of round `round_num`
    with pytest.raises(Crash):
        run(make_model, digits4, tmp_path, extra=[CrashAt(hook, round_num)])
    # Execute: fresh objects, as after a restart, continue from checkpoint_dir/last.ckpt
    resumed, fed = run(make_model, digits4, tmp_path, resume="auto")
    # Assert
    assert_same_weights(resumed.weights, uninterrupted.weights)
    assert [r.metrics for r in resumed.history] == [r.metrics for r in uninterrupted.history]
    assert [r.selected for r in resumed.history] == [r.selected for r in uninterrupted.history]
    logger = next(cb for cb in fed.callbacks if isinstance(cb, MetricsLogger))
    assert [row["round"] for row in logger.history] == [1, 2, 3, 4, 5]


def test_checkpoint_loads_with_weights_only(make_model: Callable[..., MLP], digits4: Any, tmp_path: Path) -> None:
    result, _ = run(make_model, digits4, tmp_path)

    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=True)
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]

    assert ckpt["format"] == "federated/3" and ckpt["round"] == 5
    assert_same_weights(ckpt["weights"], result.weights)
    assert set(ckpt["rng"]) >= {"python", "numpy", "torch"}
    assert "history" not in ckpt and ckpt["last_round"] == history[-1]
    assert [r["round_num"] for r in history] == [1, 2, 3, 4, 5]
    assert all("weights" not in u for r in history for u in r["updates"])
    trained = {c for r in result.history for c in r.selected}
    assert sorted(ckpt["clients"]) == sorted(trained)
    assert all(s["callbacks"]["ClientLocalDecay"]["fits"] >= 1 for s in ckpt["clients"].values())
    assert ckpt["trainer"]["num_clients"] == 4 and "AdaptiveSelection" in ckpt["callbacks"]


def test_resume_after_the_last_round_runs_no_round(
    make_model: Callable[..., MLP], digits4: Any, tmp_path: Path
) -> None:
    first, _ = run(make_model, digits4, tmp_path)
    again, _ = run(make_model, digits4, tmp_path, resume="auto")
    assert again.rounds == 5
    assert_same_weights(again.weights, first.weights)


def test_ctrl_c_in_a_client_fit_raises_keyboard_interrupt_and_resumes(
    uninterrupted: FederationResult, make_model: Callable[..., MLP], digits4: Any, tmp_path: Path
) -> None:
    # Prepare
    def interrupted_model() -> MLP:
        torch.manual_seed(0)
        return CtrlCInThirdFit(hidden=16)

    handler = signal.getsignal(signal.SIGINT)

    # Execute
    with pytest.raises(KeyboardInterrupt):
        run(interrupted_model, digits4, tmp_path)
    saved_round = torch.load(tmp_path / "last.ckpt", weights_only=True)["round"]
    resumed, _ = run(make_model, digits4, tmp_path, resume="auto")

    # Assert: round 1 was safe on disk, Ctrl-C works again, the resumed run ends as the uninterrupted one
    assert saved_round == 1
    assert signal.getsignal(signal.SIGINT) is handler
    assert_same_weights(resumed.weights, uninterrupted.weights)
    assert [r.metrics for r in resumed.history] == [r.metrics for r in uninterrupted.history]


def logged_run(make_model: Callable[..., MLP], digits4: Any, out: Path, rounds: int, resume: bool = False) -> None:
    loaders, test = digits4
    fed = FederatedTrainer(
        make_model(), loaders, test, rounds=rounds, clients_per_round=2, checkpoint_dir=out / "checkpoints",
        callbacks=[MetricsLogger(path=str(out / "metrics.csv"))], on_error="raise",
    )
    fed.fit(resume_from="auto" if resume else None)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("rounds", [3, 4])
def test_resume_rewrites_a_deleted_metrics_file(
    make_model: Callable[..., MLP], digits4: Any, tmp_path: Path, rounds: int
) -> None:
    # Prepare: a finished run of 3 rounds whose metrics.csv is then deleted
    logged_run(make_model, digits4, tmp_path, rounds=3)
    written = read_rows(tmp_path / "metrics.csv")
    (tmp_path / "metrics.csv").unlink()

    # Execute: resume with nothing left to do, or with one more round
    logged_run(make_model, digits4, tmp_path, rounds=rounds, resume=True)

    # Assert
    rows = read_rows(tmp_path / "metrics.csv")
    assert [row["round"] for row in rows] == [str(r) for r in range(1, rounds + 1)]
    assert rows[:3] == written


def test_checkpoint_size_does_not_grow_with_the_rounds(
    make_model: Callable[..., MLP], digits4: Any, tmp_path: Path
) -> None:
    # Prepare: every client in every round, so the client states are complete from round 1
    loaders, test = digits4
    sizes = CheckpointSizes()
    fed = FederatedTrainer(
        make_model(), loaders, test, rounds=8, checkpoint_dir=tmp_path,
        callbacks=[MetricsLogger(path=str(tmp_path / "metrics.csv")), sizes], on_error="raise",
    )

    # Execute
    fed.fit()

    # Assert: a few bytes of zip alignment apart (one round of history is about 400 bytes)
    assert len(sizes.sizes) == 8 and max(sizes.sizes) - min(sizes.sizes) <= 128, sizes.sizes


def model_checkpoint() -> ModelCheckpoint:
    return ModelCheckpoint(save_dir="models", save_every=2, metric="accuracy")


@pytest.mark.parametrize("name", ["round=0002.ckpt", "round=0004.ckpt", "best.ckpt"])
def test_resume_from_a_model_checkpoint_file_equals_uninterrupted(
    uninterrupted: FederationResult, make_model: Callable[..., MLP], digits4: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, name: str,
) -> None:
    # Prepare: the files of a ModelCheckpoint, in a folder of their own (with their own history log)
    monkeypatch.chdir(tmp_path)
    run(make_model, digits4, tmp_path / "loop", extra=[model_checkpoint()])

    # Execute
    resumed, fed = run(make_model, digits4, tmp_path / "loop", extra=[model_checkpoint()], resume=f"models/{name}")

    # Assert
    assert_same_weights(resumed.weights, uninterrupted.weights)
    assert [r.metrics for r in resumed.history] == [r.metrics for r in uninterrupted.history]
    assert [r.selected for r in resumed.history] == [r.selected for r in uninterrupted.history]
    logger = next(cb for cb in fed.callbacks if isinstance(cb, MetricsLogger))
    assert [row["round"] for row in logger.history] == [1, 2, 3, 4, 5]


def test_resume_drops_rounds_logged_after_the_checkpoint(
    uninterrupted: FederationResult, make_model: Callable[..., MLP], digits4: Any, tmp_path: Path
) -> None:
    # Prepare: killed when round 3's periodic file and history line are written, and last.ckpt is still round 2
    periodic = ModelCheckpoint(save_dir=str(tmp_path), save_every=1, save_best=False, save_last=False)
    with pytest.raises(Crash):
        run(make_model, digits4, tmp_path, extra=[periodic, CrashAfterSaving("round=0003.ckpt")])
    logged = len((tmp_path / "history.jsonl").read_text().splitlines())

    # Execute
    periodic = ModelCheckpoint(save_dir=str(tmp_path), save_every=1, save_best=False, save_last=False)
    resumed, _ = run(make_model, digits4, tmp_path, extra=[periodic], resume="auto")

    # Assert
    assert logged == 3 and torch.load(tmp_path / "round=0003.ckpt", weights_only=True)["round"] == 3
    assert_same_weights(resumed.weights, uninterrupted.weights)
    assert [r.metrics for r in resumed.history] == [r.metrics for r in uninterrupted.history]
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [r["round_num"] for r in history] == [1, 2, 3, 4, 5]


def test_resume_needs_the_history_log_beside_the_checkpoint(
    make_model: Callable[..., MLP], digits4: Any, tmp_path: Path
) -> None:
    run(make_model, digits4, tmp_path / "a")
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(tmp_path / "a" / "last.ckpt", tmp_path / "elsewhere" / "last.ckpt")

    with pytest.raises(CheckpointError, match=r"needs the history log .*history\.jsonl' that is written beside it"):
        run(make_model, digits4, tmp_path / "b", resume=tmp_path / "elsewhere" / "last.ckpt")


def test_resume_refuses_a_history_log_another_run_rewrote(
    make_model: Callable[..., MLP], digits4: Any, tmp_path: Path
) -> None:
    # Prepare: a checkpoint kept aside, then a run of another seed in the same folder
    run(make_model, digits4, tmp_path)
    shutil.copy(tmp_path / "last.ckpt", tmp_path / "kept.ckpt")
    run(make_model, digits4, tmp_path, seed=1)

    # Execute, Assert
    with pytest.raises(CheckpointError, match=r"is not the one written with .*kept\.ckpt'"):
        run(make_model, digits4, tmp_path, resume=tmp_path / "kept.ckpt")


def test_resume_says_a_cut_history_log_is_damaged(make_model: Callable[..., MLP], digits4: Any, tmp_path: Path) -> None:
    # Prepare: the log cut in its third line
    run(make_model, digits4, tmp_path)
    log = tmp_path / "history.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:2]) + lines[2][:10])

    # Execute, Assert
    with pytest.raises(CheckpointError, match=r"the history log .*history\.jsonl' of .* is damaged at line 3$"):
        run(make_model, digits4, tmp_path, resume="auto")
