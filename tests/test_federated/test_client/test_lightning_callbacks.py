"""Lightning's own callbacks and loggers in client fits: a copy per client, state kept and checkpointed, logs apart."""

from __future__ import annotations

import csv
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger, Logger

from callbacks import ArgumentError
from federated import MLP, FederatedTrainer
from federated.checkpoint import load_checkpoint


class NoPlaceLogger(Logger):
    """A logger with neither a folder name nor a metric prefix."""

    @property
    def name(self) -> str:
        return "none"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _federation(pairs: Any, model: MLP, tmp_path: Path, rounds: int) -> FederatedTrainer:
    return FederatedTrainer(
        model,
        pairs,
        rounds=rounds,
        local_epochs=3,
        client_callbacks=[EarlyStopping("val_loss", patience=0, min_delta=10.0), LearningRateMonitor()],
        client_loggers=[CSVLogger(tmp_path / "logs")],
        trainer_kwargs={"log_every_n_steps": 1},
        checkpoint_dir=tmp_path / "ckpt",
        seed=0,
    )


@pytest.fixture(scope="module")
def pairs2(digits4: Any) -> list[tuple[Any, Any]]:
    """Two clients that each validate on the other's first loader (enough for a val_loss)."""
    loaders, test = digits4
    return [(loaders[0], test), (loaders[1], test)]


def test_lightning_callbacks_and_loggers_run_per_client_and_resume(
    pairs2: Any, make_model: Callable[..., MLP], tmp_path: Path
) -> None:
    # Prepare / Execute: 2 rounds; an early stop that never sees the 10.0 improvement it asks for
    fed = _federation(pairs2, make_model(), tmp_path, rounds=2)
    result = fed.fit()
    # Assert: one copy per client, not the template; it stopped each fit after one epoch with no gain
    copies = [client.lightning_callbacks[0] for client in fed.clients]
    assert len({id(c) for c in copies}) == 2 and all(isinstance(c, EarlyStopping) for c in copies)
    assert [len(u.epoch_metrics) for u in result.history[0].updates] == [2, 2]  # best set at 1, no gain at 2
    assert [len(u.epoch_metrics) for u in result.history[1].updates] == [1, 1]  # its wait count carried on
    assert [c.wait_count for c in copies] == [2, 2]
    saved = load_checkpoint(str(tmp_path / "ckpt" / "last.ckpt"))["clients"][0]
    (key,) = saved["lightning_callbacks"]
    assert key == copies[0].state_key and saved["lightning_callbacks"][key]["wait_count"] == 2
    # each client logs apart, its steps going on from one fit to the next
    steps = {cid: [int(r["step"]) for r in _rows(tmp_path / "logs" / "lightning_logs" / f"client_{cid}" /
                                                   "version_0" / "metrics.csv")] for cid in (0, 1)}
    batches = len(pairs2[0][0])
    assert all(s == sorted(s) and max(s) > 2 * batches for s in steps.values())  # round 2 past round 1's 2 epochs
    assert saved["logged_steps"] == fed.clients[0].logged_steps > 0

    # Execute: a new process's federation resumes the checkpoint for a third round
    resumed = _federation(pairs2, make_model(), tmp_path, rounds=3)
    third = resumed.fit(resume_from="auto").history[-1]
    # Assert: the states came back: one epoch only, the wait count and the log steps go on
    assert [len(u.epoch_metrics) for u in third.updates] == [1, 1]
    assert [c.lightning_callbacks[0].wait_count for c in resumed.clients] == [3, 3]
    later = _rows(tmp_path / "logs" / "lightning_logs" / "client_0" / "version_1" / "metrics.csv")
    assert int(later[0]["step"]) > max(steps[0])


def test_a_clients_lightning_callbacks_survive_pickling_with_their_state(
    pairs2: Any, make_model: Callable[..., MLP], tmp_path: Path
) -> None:
    # Prepare: what the Ray backend ships to a worker, and the state it sends with each task
    fed = _federation(pairs2, make_model(), tmp_path, rounds=1)
    fed.fit()
    client = fed.clients[1]
    # Execute
    shipped = pickle.loads(pickle.dumps(client.fresh()))
    shipped.load_state_dict(pickle.loads(pickle.dumps(client.state_dict())))
    # Assert
    assert shipped.state_dict().keys() == client.state_dict().keys()
    assert shipped.lightning_callbacks[0].wait_count == client.lightning_callbacks[0].wait_count == 1
    assert Path(shipped.loggers[0].log_dir).parent.name == "client_1"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"client_callbacks": [EarlyStopping("val_loss"), EarlyStopping("val_loss", patience=5)]}, ArgumentError,
         r"`client_callbacks`: \[0\] and \[1\] are Lightning callbacks with the same state_key"),
        ({"client_loggers": [NoPlaceLogger()]}, ArgumentError,
         r"`client_loggers\[0\]`: client logger NoPlaceLogger has no folder name or metric prefix"),
        ({"client_loggers": ["csv"]}, TypeError, r"`client_loggers\[0\]` must be a lightning.pytorch Logger, got str"),
        ({"callbacks": [EarlyStopping("val_loss")]}, ArgumentError,
         r"`callbacks\[0\]`: EarlyStopping is a Lightning callback, .* put it in `client_callbacks`"),
        ({"trainer_kwargs": {"logger": CSVLogger("logs")}}, ArgumentError,
         r"`trainer_kwargs.logger`: .* give `client_loggers` instead"),
    ],
)
def test_lightning_client_callbacks_and_loggers_that_cannot_work_are_refused(
    pairs2: Any, make_model: Callable[..., MLP], kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        FederatedTrainer(make_model(), pairs2, rounds=1, **kwargs)
