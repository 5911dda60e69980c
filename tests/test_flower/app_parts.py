"""Callbacks and data functions the Flower tests name in their YAML (copied into each test's app directory).

The ServerApp and the ClientApps import this module from the app directory ``flwr run`` sends;
the test process imports it from there too, for the sequential run it compares with.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from callbacks import Callback
from federated.backends import SequentialBackend
from federated.data import digits, site_of
from federated.messages import ClientFailure


def process_kind() -> str:
    """``flwr-serverapp``, ``flwr-clientapp``, or the name of another program (the test's ``pytest``)."""
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"


class HookRecorder(Callback):
    """A native server callback: appends each federation hook it sees, in order, to a JSON-lines file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _record(self, hook: str, **fields: Any) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"hook": hook, "process": process_kind(), "pid": os.getpid(), **fields}) + "\n")

    def on_train_start(self) -> None:
        self._record("on_train_start")

    def on_round_start(self, round_num: int) -> None:
        self._record("on_round_start", round=round_num)

    def on_aggregate_start(self, round_num: int, updates: list[Any]) -> None:
        self._record("on_aggregate_start", round=round_num, clients=[u.client_id for u in updates])

    def on_aggregate_end(self, round_num: int) -> None:
        self._record("on_aggregate_end", round=round_num)

    def on_round_end(self, round_num: int, result: Any) -> None:
        failures = [[f.client_id, f.error] for f in result.failures]
        self._record("on_round_end", round=round_num, clients=[u.client_id for u in result.updates], failures=failures)

    def on_train_end(self, result: Any) -> None:
        self._record("on_train_end", rounds=result.rounds, interrupted=result.interrupted)


class FitCounter(Callback):
    """A native client callback with state: how many fits and batches its client ran, and in which program."""

    def __init__(self) -> None:
        self.fits = 0
        self.batches = 0
        self.process = ""

    def state_dict(self) -> dict[str, Any]:
        return {"fits": self.fits, "batches": self.batches, "process": self.process}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.fits, self.batches, self.process = state_dict["fits"], state_dict["batches"], state_dict["process"]

    def on_train_start(self) -> None:
        self.fits += 1
        self.process = process_kind()

    def on_batch_end(self) -> None:
        self.batches += 1


class Gate(Callback):
    """A server callback that holds the listed rounds at their start until the test says go.

    At ``on_round_start`` of such a round it writes ``started-<round>`` in ``folder`` and waits
    (up to ``wait_s``) for ``go-<round>`` there.
    """

    def __init__(self, folder: str, rounds: list[int], wait_s: float = 120.0) -> None:
        self.folder = Path(folder)
        self.rounds = list(rounds)
        self.wait_s = wait_s

    def on_round_start(self, round_num: int) -> None:
        if round_num not in self.rounds:
            return
        (self.folder / f"started-{round_num}").touch()
        deadline = time.monotonic() + self.wait_s
        while not (self.folder / f"go-{round_num}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)


class KillAfterCheckpoint(Callback):
    """Kills its own process (SIGKILL) once the round loop's checkpoint of round ``round`` is on disk."""

    def __init__(self, round: int) -> None:
        self.round = round

    def on_save_checkpoint(self, round_num: int, path: str) -> None:
        if round_num == self.round and os.path.basename(path) == "last.ckpt":
            os.kill(os.getpid(), signal.SIGKILL)


class _Touched(Dataset):
    """A client's samples; the first sample read in a process leaves ``read-<program>-<pid>-client<id>`` in
    ``folder``."""

    def __init__(self, samples: Any, folder: str, client_id: int) -> None:
        self.samples = samples
        self.folder = folder
        self.client_id = client_id
        self.seen_in: int | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Any:
        if self.seen_in != os.getpid():
            self.seen_in = os.getpid()
            Path(self.folder, f"read-{process_kind()}-{os.getpid()}-client{self.client_id}").touch()
        return self.samples[index]


def touched_digits(
    num_clients: int,
    partition: Any,
    alpha: float,
    batch_size: int,
    test_fraction: float,
    val_fraction: float,
    seed: int,
    touched: str,
    node_config: Any = None,
) -> Any:
    """The built-in digits, each client's samples recording in ``touched`` which programs read them.

    Each call leaves ``call-<program>-<pid>-<site>`` in ``touched``: ``all`` without a node config,
    ``server`` with the server's, ``client<id>`` with a SuperNode's.
    """
    Path(touched).mkdir(parents=True, exist_ok=True)
    site = site_of(node_config, num_clients)
    name = "all" if site is None else "server" if site == "server" else f"client{site}"
    Path(touched, f"call-{process_kind()}-{os.getpid()}-{name}").touch()
    data = digits(
        num_clients=num_clients, partition=partition, alpha=alpha, batch_size=batch_size,
        test_fraction=test_fraction, val_fraction=val_fraction, seed=seed, node_config=node_config,
    )
    first = 0 if site is None or site == "server" else site

    def recorded(loader: DataLoader, client_id: int, shuffle: bool) -> DataLoader:
        return DataLoader(_Touched(loader.dataset, touched, client_id), batch_size=batch_size, shuffle=shuffle)

    data.client_loaders = [
        (recorded(entry[0], i, True), recorded(entry[1], i, False))
        if isinstance(entry, tuple) else recorded(entry, i, True)
        for i, entry in enumerate(data.client_loaders, start=first)
    ]
    return data


def site_records(batch_size: int, calls: str, node_config: Any = None) -> Any:
    """The records of the site whose SuperNode's node config names their CSV file (``data-path``); none on the
    server. Each call leaves ``call-<program>-<pid>-<site>`` in ``calls``, as :func:`touched_digits` does."""
    site = "all" if node_config is None else f"client{node_config['partition-id']}" if (
        "partition-id" in node_config) else "server"
    Path(calls).mkdir(parents=True, exist_ok=True)
    Path(calls, f"call-{process_kind()}-{os.getpid()}-{site}").touch()
    if node_config is None or "partition-id" not in node_config:
        return None
    table = np.loadtxt(node_config["data-path"], delimiter=",", ndmin=2)
    features = torch.as_tensor(table[:, :-1], dtype=torch.float32)
    labels = torch.as_tensor(table[:, -1], dtype=torch.int64)
    return DataLoader(TensorDataset(features, labels), batch_size=batch_size, shuffle=True)


class SequentialWithout(SequentialBackend):
    """The sequential backend, with client ``client_id`` failing in round ``round_num`` without training.

    What a Flower federation whose SuperNode of that client is down in that round computes.
    """

    def __init__(self, round_num: int, client_id: int) -> None:
        super().__init__()
        self.round_num = round_num
        self.client_id = client_id

    def fit(self, tasks: Any, **kwargs: Any) -> Any:
        kept = [t for t in tasks if t.round_num != self.round_num or t.client_id != self.client_id]
        outcomes = iter(super().fit(kept, **kwargs))
        for task in tasks:
            yield next(outcomes) if task in kept else ClientFailure(task.client_id, "down")
