"""Native ModelCheckpoint files, native states inside Lightning checkpoints, and resuming from them."""

from __future__ import annotations

import pytest
import torch
from bridge_helpers import QUIET, Seed000Recorder, TinyRegression, epoch_events, hooks, loader
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint

from callbacks import Callback, EarlyStopping, LRScheduler, MetricsLogger, ModelCheckpoint, TensorBoard
from lightning_bridge import LightningCallbackAdapter, RecordingCheckpointIO

SCORES = [1.0, 3.0, 2.0, 2.5]


def five_builtins(out, save_every=1):
    return [
        EarlyStopping(patience=5, metric="score", mode="max"),
        ModelCheckpoint(save_dir=str(out / "ckpt"), save_every=save_every, metric="score", mode="max"),
        LRScheduler(scheduler_type="step", step_size=1, gamma=0.5),
        MetricsLogger(path=str(out / "metrics.csv")),
        TensorBoard(log_dir=str(out / "tb")),
    ]


def native_states(checkpoint):
    return checkpoint["callbacks"]["LightningCallbackAdapter"]


class StateProbe(Callback):
    """Records the states of the other callbacks as ``on_train_start`` leaves them (it runs last)."""

    def __init__(self, others) -> None:
        self.others = others
        self.at_train_start = None

    def on_train_start(self):
        self.at_train_start = {cb.state_key: cb.state_dict() for cb in self.others}


class Unsaveable:
    """A checkpoint value that fails ``torch.save`` half-way."""

    def __reduce__(self):
        raise RuntimeError("cannot be saved")


def fit(natives, max_epochs, ckpt_path=None, val=True):
    trainer = Trainer(max_epochs=max_epochs, callbacks=[LightningCallbackAdapter(natives, on_error="raise")], **QUIET)
    trainer.fit(TinyRegression(scores=SCORES), loader(), loader() if val else None, ckpt_path=ckpt_path)
    return trainer


def test_model_checkpoint_writes_periodic_best_and_last_files_atomically(tmp_path):
    # Prepare
    checkpoint = ModelCheckpoint(save_dir=str(tmp_path), save_every=1, metric="score", mode="max")

    # Execute
    fit([checkpoint], max_epochs=3)

    # Assert: best follows the score (3.0 at epoch 1); no temporary file is left
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.ckpt", "epoch=0000.ckpt", "epoch=0001.ckpt", "epoch=0002.ckpt", "last.ckpt",
    ]  # fmt: skip
    loaded = {p.name: torch.load(p, weights_only=True) for p in tmp_path.iterdir()}
    assert [loaded[f"epoch={e:04d}.ckpt"]["epoch"] for e in range(3)] == [0, 1, 2]
    assert loaded["best.ckpt"]["epoch"] == 1
    assert loaded["last.ckpt"]["epoch"] == 2
    state = native_states(loaded["best.ckpt"])["ModelCheckpoint{'metric': 'score', 'mode': 'max'}"]
    assert state == {"best": 3.0, "best_path": str(tmp_path / "best.ckpt"), "saved_epoch": 1}
    assert checkpoint.best == 3.0 and checkpoint.best_path == str(tmp_path / "best.ckpt")


def test_recording_checkpoint_io_records_each_file_and_a_failed_save_leaves_the_old_one(tmp_path):
    # Prepare
    io = RecordingCheckpointIO(TorchCheckpointIO())
    target = tmp_path / "ckpt" / "last.ckpt"

    # Execute: the second save cannot pickle its content
    io.save_checkpoint({"epoch": 1}, target)
    with pytest.raises(RuntimeError, match="cannot be saved"):
        io.save_checkpoint({"epoch": 2, "part": Unsaveable()}, target)

    # Assert: the first file is whole and alone (no temporary file), and only it was recorded
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]
    assert torch.load(target, weights_only=True) == {"epoch": 1}
    assert io.written == [str(target)]


def test_checkpoint_holds_the_five_native_states_and_a_resumed_fit_matches_an_uninterrupted_one(tmp_path):
    # Prepare: an uninterrupted 4-epoch run writes a checkpoint at each validation end
    uninterrupted = five_builtins(tmp_path / "a")
    fit(uninterrupted, max_epochs=4)
    path = tmp_path / "a" / "ckpt" / "epoch=0001.ckpt"
    saved = native_states(torch.load(path, weights_only=True))
    resumed = five_builtins(tmp_path / "a")
    probe, recorder = StateProbe(resumed), Seed000Recorder()

    # Execute: resume from the checkpoint of epoch 1 with new callback objects
    trainer = fit([*resumed, recorder, probe], max_epochs=4, ckpt_path=str(path))

    # Assert: the five states were in the checkpoint and on_train_start did not reset them
    assert sorted(saved) == sorted([cb.state_key for cb in resumed] + ["lightning_bridge:epoch_in_progress"])
    assert probe.at_train_start["EarlyStopping{'metric': 'score', 'mode': 'max'}"] == {
        "best": 3.0, "counter": 0, "stopped_at": None, "patience": 5,
    }  # fmt: skip
    assert probe.at_train_start[resumed[3].state_key] == {"rows": 1}  # epoch 0's row, taken back from the file
    # ... the hooks of epoch 1 still due when ModelCheckpoint (index 1) wrote the file run first:
    # on_validation_end for the callbacks after it, on_epoch_end for all; then epochs 2 and 3
    assert recorder.events == [
        ("on_train_start",),
        ("on_validation_end", 1),
        ("on_epoch_end", 1),
        *epoch_events(2, batches=2, saves=2),
        *epoch_events(3, batches=2, saves=2),
        ("on_train_end",),
    ]
    assert trainer.current_epoch == 4
    # ... and every native ends as in the uninterrupted run
    assert resumed[3].history == uninterrupted[3].history
    assert [row["lr"] for row in resumed[3].history] == [0.1, 0.05, 0.025, 0.0125]
    for before, after in zip(uninterrupted, resumed, strict=True):
        assert after.state_dict() == before.state_dict(), type(before).__name__


def test_resume_from_last_checkpoint_trains_only_the_remaining_epochs(tmp_path):
    # Prepare
    fit(five_builtins(tmp_path / "a"), max_epochs=2)
    recorder = Seed000Recorder()

    # Execute
    fit([*five_builtins(tmp_path / "a"), recorder], max_epochs=3, ckpt_path=str(tmp_path / "a" / "ckpt" / "last.ckpt"))

    # Assert
    assert [e[1] for e in hooks(recorder.events, "on_epoch_start")] == [2]
    assert [e[1] for e in hooks(recorder.events, "on_epoch_end")] == [1, 2]


def test_resume_from_last_finds_the_native_model_checkpoints_last_file(tmp_path, recwarn):
    # Prepare: enable_checkpointing=False, the native ModelCheckpoint keeps last.ckpt
    fit(five_builtins(tmp_path), max_epochs=2)
    recorder = Seed000Recorder()

    # Execute
    trainer = fit([*five_builtins(tmp_path), recorder], max_epochs=3, ckpt_path="last")

    # Assert: Lightning restored that file, and only the remaining epoch trained
    assert trainer.ckpt_path == str(tmp_path / "ckpt" / "last.ckpt")
    assert [e[1] for e in hooks(recorder.events, "on_epoch_start")] == [2]
    assert not [w for w in recwarn if "no last checkpoint" in str(w.message)]


def test_resume_from_last_takes_the_newest_of_native_and_lightning_last_files(tmp_path):
    # Prepare: a native last.ckpt, then a newer one of Lightning's ModelCheckpoint
    fit(five_builtins(tmp_path / "native"), max_epochs=1)
    lightning_checkpoint = LightningModelCheckpoint(dirpath=tmp_path / "lightning", save_last=True)
    quiet = {**QUIET, "enable_checkpointing": True}
    Trainer(max_epochs=2, callbacks=[lightning_checkpoint], **quiet).fit(TinyRegression(), loader(), loader())
    adapter = LightningCallbackAdapter(five_builtins(tmp_path / "native"))
    lightning_checkpoint = LightningModelCheckpoint(dirpath=tmp_path / "lightning", save_last=True)
    trainer = Trainer(max_epochs=3, callbacks=[adapter, lightning_checkpoint], **quiet)

    # Execute
    trainer.fit(TinyRegression(scores=SCORES), loader(), loader(), ckpt_path="last")

    # Assert: the newer file, Lightning's, after 2 epochs
    assert trainer.ckpt_path == str(tmp_path / "lightning" / "last.ckpt")


def test_resume_without_validation_finishes_the_epoch_end_hooks_that_were_still_due(tmp_path):
    # Prepare: no validation: ModelCheckpoint writes during on_epoch_end, after LRScheduler's step
    def natives(out):
        return [
            LRScheduler(scheduler_type="step", step_size=1, gamma=0.5),
            ModelCheckpoint(save_dir=str(out / "ckpt"), save_every=1, metric="avg_loss", mode="min"),
            MetricsLogger(path=str(out / "metrics.csv")),
        ]

    uninterrupted = natives(tmp_path)
    fit(uninterrupted, max_epochs=3, val=False)
    resumed = natives(tmp_path)

    # Execute
    fit(resumed, max_epochs=3, ckpt_path=str(tmp_path / "ckpt" / "epoch=0000.ckpt"), val=False)

    # Assert: MetricsLogger got epoch 0's row on resume, and LRScheduler did not step twice
    assert resumed[2].history == uninterrupted[2].history
    assert [row["lr"] for row in resumed[2].history] == [0.1, 0.05, 0.025]


def test_resume_warns_about_native_states_no_callback_claims(tmp_path):
    # Prepare
    fit([ModelCheckpoint(save_dir=str(tmp_path), metric="val_loss"), MetricsLogger(path=str(tmp_path / "a.csv"))], 1)
    moved = MetricsLogger(path=str(tmp_path / "b.csv"))  # another path: another state_key

    # Execute / Assert: the checkpoint's ModelCheckpoint state is claimed, the MetricsLogger one is not
    with pytest.warns(UserWarning, match=r"no callback here claims: MetricsLogger\{'path': '.*a\.csv'\}\."):
        fit([ModelCheckpoint(save_dir=str(tmp_path), metric="val_loss"), moved], 2, str(tmp_path / "last.ckpt"))
    assert [row["epoch"] for row in moved.history] == [0, 1]  # epoch 0's end was still due, then epoch 1


def test_adapter_refuses_two_natives_with_one_state_key(tmp_path):
    path = str(tmp_path / "metrics.csv")
    with pytest.raises(ValueError, match=r"two callbacks share the state key \"MetricsLogger\{'path': .*"):
        LightningCallbackAdapter([MetricsLogger(path=path), MetricsLogger(path=path)])


def test_one_adapter_per_trainer_holds_the_native_callbacks():
    with pytest.raises(RuntimeError, match="state_key` must be unique"):
        Trainer(callbacks=[LightningCallbackAdapter(), LightningCallbackAdapter()], **QUIET)
