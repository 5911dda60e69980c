"""One federation run from a YAML config: build and check everything, then train and write outputs.

This is the engine of ``python -m lightning_bridge.fed``. :func:`prepare_run` builds every object
the config names, so a config error surfaces before anything is written; :meth:`Run.execute` then
trains and writes, under ``output_dir``: ``config.yaml`` (the resolved config), ``metrics.csv``
(one row per round, written as each round ends), ``tensorboard/``, ``checkpoints/last.ckpt``
(after every round: ``--resume auto`` continues from the newest checkpoint), the checkpoints of a
configured ``model_checkpoint``, and ``final_weights.pt``.
"""

from __future__ import annotations

import glob
import os
import random
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import yaml

from callbacks import Callback, ConfigError, MetricsLogger, TensorBoard
from federated import datasets as _datasets  # noqa: F401 - registers the built-in data sets
from federated import fedavg as _fedavg  # noqa: F401 - registers the FedAvg strategy
from federated import models as _models  # noqa: F401 - registers the built-in models
from federated._build import (
    build_backend,
    build_callbacks_at,
    build_data,
    build_model,
    build_strategy,
    check_trainer,
    one_line,
)
from federated.checkpoint import load_checkpoint
from federated.config import load_config
from federated.exceptions import CheckpointError
from federated.trainer import FederatedTrainer

__all__ = ["Run", "prepare_run"]

PATH_ARGUMENTS = ("save_dir", "log_dir", "path")
"""Callback arguments that name files; relative ones resolve under ``output_dir``."""


@dataclass
class Run:
    """A checked federation, ready to :meth:`execute`."""

    config: dict[str, Any]
    trainer: FederatedTrainer
    output_dir: str
    resume: str | None
    resume_round: int | None
    metric: str
    mode: str
    outputs: list[str] = field(default_factory=list)

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
        if self.resume is None:
            for stale in self.outputs:
                if os.path.isdir(stale):
                    shutil.rmtree(stale)
                elif os.path.exists(stale):
                    os.remove(stale)
        _atomic_write_text(os.path.join(self.output_dir, "config.yaml"), yaml.safe_dump(self.config, sort_keys=False))
        result = self.trainer.fit(resume_from=self.resume)
        weights_path = os.path.join(self.output_dir, "final_weights.pt")
        tmp = f"{weights_path}.tmp"
        torch.save(result.weights, tmp)
        os.replace(tmp, weights_path)
        return self._summary(result)

    def _summary(self, result: Any) -> dict[str, Any]:
        scored = [(r.metrics[self.metric], r.round_num) for r in result.history if self.metric in r.metrics]
        best = (max if self.mode == "max" else min)(scored, default=None, key=lambda s: s[0])
        return {
            "rounds": len(result.history),
            "planned": self.config["rounds"],
            "stopped_early": result.stopped_early,
            "metric": self.metric,
            "best": best[0] if best else None,
            "best_round": best[1] if best else None,
            "final": dict(result.history[-1].metrics) if result.history else {},
            "output_dir": self.output_dir,
        }


def prepare_run(
    config_path: str | os.PathLike[str] | None, overrides: Sequence[str] = (), resume: str | None = None
) -> Run:
    """Load and check the config, build data, model, strategy and callbacks; write nothing.

    The config's ``seed`` seeds Python's, NumPy's and torch's generators first, so the data split
    and the model's initial weights are the same in every run with that seed.

    Raises:
        ConfigError: Anything wrong in the config or the command line, as one line with its key path.
    """
    config = load_config(config_path, list(overrides))
    out = config["output_dir"]
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"{out!r} exists and is not a directory", "output_dir")
    _seed(config["seed"])
    data = build_data(config["data"], config["seed"])
    model = build_model(config["model"], data)
    strategy = build_strategy(config["strategy"])
    backend = build_backend(config["backend"])
    callbacks = build_callbacks_at(_under(config["callbacks"], out), "callbacks", config["on_error"])
    client_callbacks = build_callbacks_at(
        _under(config["client_callbacks"], out), "client_callbacks", config["on_error"]
    )
    trainer_kwargs = check_trainer(config["trainer"])
    metric, mode = _watched(callbacks)
    callbacks += _own_outputs(callbacks, out)
    callbacks.append(RoundProgress(config["rounds"], metric))
    clients = config["clients"]
    try:
        trainer = FederatedTrainer(
            model,
            data.client_loaders,
            data.test_loader,
            rounds=config["rounds"],
            clients_per_round=clients["per_round"] if clients["per_round"] is not None else clients["fraction"],
            local_epochs=clients["local_epochs"],
            strategy=strategy,
            callbacks=callbacks,
            client_callbacks=client_callbacks,
            trainer_kwargs=trainer_kwargs,
            min_clients=clients["min_clients"],
            seed=config["seed"],
            checkpoint_dir=os.path.join(out, "checkpoints"),
            on_error=config["on_error"],
            batch_size=config["data"]["batch_size"],  # for client data given as a Dataset
            backend=backend,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(one_line(exc), "<config>") from exc
    stale = [os.path.join(out, name) for name in ("metrics.csv", "tensorboard", "checkpoints", "final_weights.pt")]
    stale += [p for cb in callbacks for p in _paths_of(cb) if _inside(p, out)]
    resume_path, resume_round = _resume_path(resume, out, len(data.client_loaders))
    return Run(config, trainer, out, resume_path, resume_round, metric, mode, outputs=sorted(set(stale)))


class RoundProgress(Callback):
    """Shows the rounds: a tqdm bar with the live metric on a terminal, one line per round otherwise.

    Args:
        rounds: The number of rounds planned.
        metric: The metric shown first. Defaults to ``"accuracy"``.
        stream: Where to write. Defaults to ``sys.stderr``.

    Example:
        >>> progress = RoundProgress(rounds=20)
        >>> progress.metric
        'accuracy'
    """

    def __init__(self, rounds: int, metric: str = "accuracy", stream: Any = None) -> None:
        self.rounds = rounds
        self.metric = metric
        self.stream = stream if stream is not None else sys.stderr
        self._bar: Any = None
        self._started = 0.0

    def on_train_start(self, trainer: Any) -> None:
        self._started = time.perf_counter()
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.rounds, initial=trainer.current_round, desc="rounds", file=self.stream)

    def on_round_end(self, trainer: Any, round_num: int, result: Any) -> None:
        shown = {k: v for k, v in result.metrics.items() if k in (self.metric, "accuracy", "val_loss", "train_loss")}
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.4f}" for k, v in shown.items()}, refresh=False)
            self._bar.update(1)
            return
        failed = f", {len(result.failures)} failed" if result.failures else ""
        values = "  ".join(f"{k}={v:.4f}" for k, v in shown.items())
        elapsed = time.perf_counter() - self._started
        print(
            f"round {round_num:>3}/{self.rounds}  {values}  clients={len(result.updates)}{failed}  {elapsed:.1f}s",
            file=self.stream,
            flush=True,
        )

    def on_train_end(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _under(entries: list[Any], out: str) -> list[Any]:
    """A copy of callback entries whose relative path arguments point under ``out``."""
    resolved = []
    for entry in entries:
        if isinstance(entry, Mapping) and isinstance(entry.get("args"), Mapping):
            args = {
                k: os.path.join(out, v) if k in PATH_ARGUMENTS and isinstance(v, str) and not os.path.isabs(v) else v
                for k, v in entry["args"].items()
            }
            entry = {**entry, "args": args}
        resolved.append(entry)
    return resolved


def _own_outputs(callbacks: list[Any], out: str) -> list[Any]:
    """The CLI's metrics.csv and TensorBoard writers, unless a configured callback writes there already."""
    csv_path, tb_dir = os.path.join(out, "metrics.csv"), os.path.join(out, "tensorboard")
    own: list[Any] = []
    if not any(isinstance(cb, MetricsLogger) and _same(cb.path, csv_path) for cb in callbacks):
        own.append(MetricsLogger(path=csv_path))
    if not any(isinstance(cb, TensorBoard) and _same(cb.log_dir, tb_dir) for cb in callbacks):
        own.append(TensorBoard(log_dir=tb_dir))
    return own


def _watched(callbacks: list[Any]) -> tuple[str, str]:
    """The metric (and mode) the summary reports: the early stopping one, else accuracy."""
    for cb in callbacks:
        if type(cb).__name__ == "EarlyStopping":
            return cb.metric, cb.mode
    return "accuracy", "max"


def _paths_of(callback: Any) -> list[str]:
    return [p for name in PATH_ARGUMENTS if isinstance(p := getattr(callback, name, None), str)]


def _same(a: str | None, b: str) -> bool:
    return a is not None and os.path.realpath(a) == os.path.realpath(b)


def _inside(path: str, directory: str) -> bool:
    """Whether ``path`` lies strictly inside ``directory``."""
    path, directory = os.path.realpath(path), os.path.realpath(directory)
    return path != directory and os.path.commonpath([path, directory]) == directory


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _resume_path(resume: str | None, out: str, num_clients: int) -> tuple[str | None, int | None]:
    """The checkpoint ``--resume`` names (``auto``: the newest under ``out``) and its round; ``None`` to start afresh.

    A directory stands for the newest ``*.ckpt`` file under it; ``auto`` with no checkpoint starts afresh.
    """
    if resume is None:
        return None, None
    where = out if resume == "auto" else resume
    if resume != "auto" and not os.path.exists(resume):
        raise ConfigError(f"no such checkpoint file or directory: {resume!r}", "--resume")
    if os.path.isdir(where):
        found = glob.glob(os.path.join(where, "**", "*.ckpt"), recursive=True)
        if not found:
            if resume == "auto":
                return None, None
            raise ConfigError(f"no *.ckpt file under the directory {resume!r}", "--resume")
        # the newest; the round loop's own last.ckpt wins a tie (it is written after the others)
        where = max(found, key=lambda p: (os.stat(p).st_mtime_ns, os.path.basename(p) == "last.ckpt"))
    try:
        checkpoint = load_checkpoint(where)
        saved, round_num = checkpoint["trainer"], int(checkpoint["round"])
    except (CheckpointError, OSError, KeyError) as exc:
        raise ConfigError(one_line(exc), "--resume") from exc
    if saved["num_clients"] != num_clients:
        raise ConfigError(
            f"{where!r} is from a federation of {saved['num_clients']} clients, this config has {num_clients}",
            "--resume",
        )
    return where, round_num


def _atomic_write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
