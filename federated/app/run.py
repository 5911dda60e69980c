"""One federation run from a YAML config: build and check everything, then train and write outputs.

This is the engine of ``python -m lightning_bridge.fed``. :func:`prepare_run` builds every object
the config names and checks a resume against the run it continues, so a config error surfaces
before anything is written; :meth:`Run.execute` then trains and writes, under ``output_dir``:
``config.yaml`` (the resolved config), ``metrics.csv`` (one row per round, written as each round
ends), ``tensorboard/``, ``checkpoints/last.ckpt`` (after every round: ``--resume auto``
continues from the checkpoint of the latest round), the checkpoints of a configured
``model_checkpoint``, and ``final_weights.pt``. The directory's rules (the run's manifest of its
files, its lock, where writers may write) are in :mod:`federated.app.run_dir` and
:mod:`federated.app.writer_paths`.
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from callbacks import ConfigError, MetricsLogger, ModelCheckpoint, TensorBoard, dump_yaml
from callbacks.arguments import echo, one_line
from callbacks.callback import stateful_callbacks
from callbacks.files import atomic_write
from federated import data as _data  # noqa: F401 - registers the built-in data sets
from federated import models as _models  # noqa: F401 - registers the built-in models
from federated import strategies as _strategies  # noqa: F401 - registers the strategies
from federated.app import run_dir
from federated.app.builders import DATA_KEYWORDS, build_trainer, watched_metric
from federated.app.config import load_config, read_yaml
from federated.app.monitored import check_monitored
from federated.app.writer_paths import check_claims, claims, within
from federated.checkpoint import load_checkpoint, load_history
from federated.exceptions import CheckpointError
from federated.resume import ResumePoint
from federated.seeding import seed_everything
from federated.trainer import FederatedTrainer

__all__ = ["Run", "prepare_run"]

LAST = "last.ckpt"
"""The round loop's own checkpoint, in ``output_dir/checkpoints``; it wins a tie of rounds."""

DATA_KEYS = ("data.type", "data.args", *(key for key in DATA_KEYWORDS.values() if key != "data.batch_size"))
"""Config keys that decide each client's data (the batch size does not): a resume cannot change them."""

@dataclass
class Run:
    """A checked federation, ready to :meth:`execute`."""

    config: dict[str, Any]
    trainer: FederatedTrainer
    output_dir: str
    resume_point: ResumePoint | None
    """The checkpoint to continue, memory-mapped, or ``None`` for a fresh run."""
    metric: str
    mode: str
    outputs: dict[str, list[str]] = field(default_factory=dict)
    """The files this run writes: name patterns (regular expressions) by directory relative to ``output_dir``."""
    overwrite: bool = False
    """Whether a fresh run may write where files it did not write lie (``--overwrite``)."""
    warnings: list[str] = field(default_factory=list)
    """What a resume changes from the run it continues, one line each."""

    @property
    def resume(self) -> str | None:
        """The checkpoint file to continue, or ``None`` for a fresh run."""
        return None if self.resume_point is None else self.resume_point.path

    @property
    def resume_round(self) -> int | None:
        """The round of the checkpoint to continue, or ``None`` for a fresh run."""
        return None if self.resume_point is None else self.resume_point.round

    def describe(self) -> str:
        """One line: what this run will do."""
        data, clients = self.config["data"], self.config["clients"]
        return (
            f"{self.config['rounds']} rounds, {data['type']} over {data['num_clients']} clients "
            f"({data['partition']['type']}), {self.trainer.clients_per_round} per round, "
            f"model {self.config['model']['type']}, strategy {self.config['strategy']['type']}, "
            f"{clients['local_epochs']} local epoch(s); outputs in {self.output_dir}"
        )

    def execute(self) -> dict[str, Any]:
        """Train, write the outputs and return a summary of the run."""
        if self.config["threads"] is not None:
            torch.set_num_threads(self.config["threads"])
        os.makedirs(self.output_dir, exist_ok=True)
        with run_dir.locked(self.output_dir):
            self.check_output_dir(locked=True)  # again, now that no other run can write there
            run_dir.write_manifest(self.output_dir, self.outputs)
            if self.resume is None:
                run_dir.remove_earlier(self.output_dir, self.outputs)
            with atomic_write(os.path.join(self.output_dir, "config.yaml")) as f:
                f.write(dump_yaml(self.config))
            # in memory before the round loop replaces the checkpoint's file
            point = None if self.resume_point is None else self.resume_point.in_memory()
            result = self.trainer.fit(resume_from=point)
            with atomic_write(os.path.join(self.output_dir, "final_weights.pt"), "wb") as f:
                torch.save(result.weights, f)
            self._check_written(result)
        return self._summary(result)

    def check_output_dir(self, locked: bool = False) -> None:
        """Refuse an output directory this run may not write in as it is, before anything is written.

        Args:
            locked: Whether this process holds the directory's lock already.

        Raises:
            ConfigError: Another run holds it, a writer's file or folder is in the way, or a fresh
                run would write beside files no run of this project wrote there.
        """
        out = self.output_dir
        if not locked:
            run_dir.check_unlocked(out)
        configured = len(self.config["callbacks"])
        check_claims(claims(self.trainer.callbacks, self.trainer.client_callbacks, configured, out), out)
        run_dir.check_owned(out, self.outputs, fresh=self.resume is None, overwrite=self.overwrite)

    def _check_written(self, result: Any) -> None:
        """Fail the run where a writer did not write its file (its errors were logged as warnings)."""
        if not result.history:
            return
        for callback in self.trainer.callbacks:
            missing = None
            if isinstance(callback, MetricsLogger) and callback.path is not None and not os.path.isfile(callback.path):
                missing = callback.path
            elif isinstance(callback, TensorBoard) and not glob.glob(
                os.path.join(glob.escape(callback.log_dir), "events.out.tfevents.*")
            ):
                missing = callback.log_dir
            if missing is not None:
                raise RuntimeError(
                    f"{type(callback).__name__} did not write {echo(missing)} (its errors are logged above); "
                    "the run's outputs are incomplete"
                )

    def _summary(self, result: Any) -> dict[str, Any]:
        scored = [(r.metrics[self.metric], r.round_num) for r in result.history if self.metric in r.metrics]
        best = (max if self.mode == "max" else min)(scored, default=None, key=lambda s: s[0])
        return {
            "rounds": len(result.history),
            "planned": self.config["rounds"],
            "stopped_early": result.stopped_early,
            "stopped_by": [str(r) for r in (getattr(cb, "stop_reason", None) for cb in self.trainer.callbacks) if r],
            "metric": self.metric,
            "best": best[0] if best else None,
            "best_round": best[1] if best else None,
            "final": dict(result.history[-1].metrics) if result.history else {},
            "output_dir": self.output_dir,
        }


def prepare_run(
    config_path: str | os.PathLike[str] | None,
    overrides: Sequence[str] = (),
    resume: str | None = None,
    overwrite: bool = False,
) -> Run:
    """Load and check the config, build data, model, strategy and callbacks, check a resume; write nothing.

    Args:
        config_path: The YAML config, or ``None`` for the defaults.
        overrides: ``key.path=value`` overrides of the config (``--set``).
        resume: ``"auto"`` or a checkpoint path to continue (``--resume``), or ``None`` for a fresh run.
        overwrite: Let a fresh run write into a directory holding files no run of this project wrote
            (``--overwrite``).

    The config's ``seed`` seeds Python's, NumPy's and torch's generators first, so the data split
    and the model's initial weights are the same in every run with that seed.

    Raises:
        ConfigError: Anything wrong in the config or the command line, as one line with its key path.
    """
    config = load_config(config_path, list(overrides))
    out = config["output_dir"]
    _check_writable(out)
    seed_everything(config["seed"])
    trainer = build_trainer(config)
    check_monitored(trainer, config)
    metric, mode = watched_metric(trainer.callbacks, config)
    written = [*trainer.callbacks, *trainer.client_callbacks]
    run = Run(config, trainer, out, None, metric, mode, run_dir.outputs(written, out), overwrite=overwrite)
    if resume is not None:
        _prepare_resume(run, resume, _checkpoint_dirs(written, out))
    run.check_output_dir()
    return run


def _check_writable(out: str) -> None:
    """Refuse an ``output_dir`` that cannot be made or written, without leaving anything behind.

    The nearest folder of ``out`` that exists is probed with an anonymous temporary file.
    """
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"{echo(out)} exists and is not a directory", "output_dir")
    existing = os.path.abspath(out)
    while True:
        try:
            os.stat(existing)
            break
        except FileNotFoundError:
            existing = os.path.dirname(existing)
        except OSError as exc:  # e.g. a file on the way ("Not a directory"), a name too long
            raise ConfigError(f"cannot create {echo(out)} ({exc.strerror})", "output_dir") from exc
    if not os.path.isdir(existing):
        raise ConfigError(f"cannot create {echo(out)}: {echo(existing)} is a file", "output_dir")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot write under {echo(existing)} ({exc.strerror})", "output_dir") from exc


def _prepare_resume(run: Run, resume: str, checkpoint_dirs: list[str]) -> None:
    """Pick the checkpoint ``--resume`` names and check that this run can continue it (``run`` is updated).

    The resolved config of the run resumed (its ``config.yaml``) is compared with this one: a change
    of the clients' data or of the model is refused, any other change is a warning. ``auto`` with no
    valid checkpoint leaves ``run.resume_point`` at ``None``: the run starts afresh.
    """
    point, skipped = _resume_checkpoint(resume, checkpoint_dirs)
    run.warnings += [f"skipping {why}" for why in skipped]
    if point is None:
        return
    path, checkpoint = point.path, point.checkpoint
    changed = []
    saved_config = os.path.join(run.output_dir, "config.yaml")
    if within(path, run.output_dir) and os.path.isfile(saved_config):
        try:
            changed = _changes(read_yaml(saved_config), run.config)
        except ConfigError as exc:
            run.warnings.append(f"not compared with the config of the run resumed: {exc}")
    for key, before, after in changed:
        if key == "model.type" or any(key == k or key.startswith(f"{k}.") for k in DATA_KEYS):
            raise ConfigError(
                f"{echo(after)}, but the run resumed has {echo(before)} ({echo(saved_config)}): its clients' data "
                "or model would differ; resume with the same value, or start afresh without --resume",
                key,
            )
    run.warnings += [f"resuming with {key} {echo(after)} (was {echo(before)})" for key, before, after in changed]
    model_key = next((k for k, _, _ in changed if k.startswith("model.args.")), "model.args")
    _check_fits(checkpoint, path, run.trainer, model_key)
    run.resume_point = point


def _resume_checkpoint(resume: str, checkpoint_dirs: list[str]) -> tuple[ResumePoint | None, list[str]]:
    """The checkpoint to resume from, memory-mapped, with its history, and why others were passed over.

    ``None`` is to start afresh (``auto`` only).

    ``auto`` looks at this run's checkpoint folders, a directory at every ``*.ckpt`` under it; the
    checkpoint of the latest round wins (the round stored in it, not the file's time), the round
    loop's own ``last.ckpt`` on a tie. A damaged ``last.ckpt`` may hold a later round than any valid
    checkpoint, so it is refused, naming those that ``--resume PATH`` could take instead; so is a
    whole checkpoint whose history log is missing or damaged.
    """
    if resume == "auto":
        files = [f for d in checkpoint_dirs for f in glob.glob(os.path.join(glob.escape(d), "*.ckpt"))]
    elif not os.path.exists(resume):
        raise ConfigError(f"no such checkpoint file or directory: {echo(resume)}", "--resume")
    elif os.path.isdir(resume):
        files = glob.glob(os.path.join(glob.escape(resume), "**", "*.ckpt"), recursive=True)
    else:
        files = [resume]
    valid, damaged = _rounds(files, own=os.path.join(checkpoint_dirs[0], LAST))
    explicit = files == [resume]
    if explicit and damaged:
        siblings = glob.glob(os.path.join(glob.escape(os.path.dirname(resume) or "."), "*.ckpt"))
        valid, _ = _rounds([f for f in siblings if not os.path.samefile(f, resume)], own="")
    # a whole checkpoint whose history log is lost is refused even by auto: starting afresh would lose the run
    lost = [why for path, why, whole in sorted(damaged, key=lambda d: os.path.basename(d[0]) != LAST)
            if explicit or whole or os.path.basename(path) == LAST]
    if lost and (valid or resume != "auto" or any(whole for _, _, whole in damaged)):
        older = ", ".join(f"{echo(p)} (round {r})" for r, _, p, _ in sorted(valid, reverse=True)) or "none"
        raise ConfigError(f"{lost[0]}; valid checkpoints that `--resume PATH` can take: {older}", "--resume")
    skipped = [why for _, why, _ in damaged]
    if valid:
        return max(valid, key=lambda v: v[:3])[3], skipped
    if resume == "auto":
        return None, skipped
    raise ConfigError(f"no federation checkpoint under the directory {echo(resume)}", "--resume")


def _rounds(
    files: Sequence[str], own: str
) -> tuple[list[tuple[int, int, str, ResumePoint]], list[tuple[str, str, bool]]]:
    """``(round, rank, path, checkpoint read)`` of the valid federation checkpoints of ``files``; of others
    ``(path, why, whether the file itself is whole)``.

    Each is read once, memory-mapped: its tensors are not read until used. A checkpoint whose
    history log (``history.jsonl`` beside it) is missing, damaged or another run's is not valid.
    The rank breaks a tie of rounds: 2 for ``own`` (the round loop's ``last.ckpt``), 1 for another
    ``last.ckpt``, 0 for the rest.
    """
    valid, damaged = [], []
    for path in sorted(set(files)):
        try:
            checkpoint = load_checkpoint(path, mmap=True)
            round_num = int(checkpoint["round"])
        except (CheckpointError, OSError, KeyError, TypeError, ValueError) as exc:
            damaged.append((path, one_line(exc), False))
            continue
        try:
            history = load_history(path, checkpoint)  # a resume needs the rounds' log beside the checkpoint
        except (CheckpointError, OSError) as exc:
            damaged.append((path, one_line(exc), True))
            continue
        rank = 2 if os.path.abspath(path) == os.path.abspath(own) else int(os.path.basename(path) == LAST)
        valid.append((round_num, rank, path, ResumePoint(path, checkpoint, history)))
    return valid, damaged


def _changes(saved: Mapping[str, Any], config: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key.path, saved value, value now)`` of each value that differs, but ``output_dir`` (a run may move)."""
    was, now = dict(_flat(saved)), dict(_flat(config))
    keys = [*now, *(k for k in was if k not in now)]
    return [(k, was.get(k), now.get(k)) for k in keys if was.get(k) != now.get(k) and k != "output_dir"]


def _flat(config: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(key.path, value)`` of every value of ``config``; lists are values."""
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flat(value, f"{path}.")
        else:
            yield path, value


def _check_fits(checkpoint: Mapping[str, Any], path: str, trainer: FederatedTrainer, model_key: str) -> None:
    """Refuse a checkpoint whose clients, weights or callback states this run cannot take, before any write.

    ``model_key`` is the config key a weights mismatch is reported at (the model argument that changed).
    """
    saved = checkpoint["trainer"]
    if saved["num_clients"] != len(trainer.clients):
        raise ConfigError(
            f"{len(trainer.clients)} clients, but {echo(path)} is from a federation of {saved['num_clients']}; "
            "resume with the same clients, or start afresh without --resume",
            "data.num_clients",
        )
    if saved["seed"] != trainer.seed:
        raise ConfigError(
            f"{trainer.seed}, but {echo(path)} is from a run with seed {saved['seed']}, which split the clients' "
            "data; resume with the same seed, or start afresh without --resume",
            "seed",
        )
    shapes = {name: tuple(t.shape) for name, t in trainer.model.state_dict().items()}
    stored = {name: tuple(t.shape) for name, t in checkpoint["weights"].items()}
    if shapes != stored:
        name = next(iter(sorted(set(shapes) ^ set(stored)) or [n for n in shapes if shapes[n] != stored[n]]))
        raise ConfigError(
            f"the model does not fit the weights in {echo(path)} "
            f"(`{name}`: {shapes.get(name, 'missing')} here, {stored.get(name, 'missing')} there); resume "
            "with the model arguments of the run resumed, or start afresh without --resume",
            model_key,
        )
    here = stateful_callbacks(trainer.callbacks)
    for key in checkpoint["callbacks"]:
        if key not in here:
            raise ConfigError(
                f"{echo(path)} holds the state of callback {echo(key)}, which this config does not have "
                f"(callbacks with state here: {', '.join(sorted(here)) or 'none'}); resume with the callbacks "
                "of the run that wrote it",
                "callbacks",
            )


def _checkpoint_dirs(callbacks: list[Any], out: str) -> list[str]:
    """Where this run writes federation checkpoints: ``out/checkpoints`` and its model_checkpoint folders."""
    dirs = [os.path.join(out, "checkpoints")]
    dirs += [cb.save_dir for cb in callbacks if isinstance(cb, ModelCheckpoint) and within(cb.save_dir, out)]
    return list(dict.fromkeys(dirs))
