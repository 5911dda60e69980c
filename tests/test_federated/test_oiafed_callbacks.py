"""OiaFed 0.2's own callback classes, imported from the installed ``oiafed`` package, in real federations."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

from callbacks import ArgumentError, Callback
from callbacks.oiafed import import_oiafed
from federated import MLP, FederatedTrainer, digits_federation

if importlib.util.find_spec("oiafed") is None:
    pytest.skip("needs the oiafed extra (make venv EXTRAS=dev,oiafed)", allow_module_level=True)

oiafed_base = import_oiafed("oiafed.callback.base")
oiafed_builtin = import_oiafed("oiafed.callback.builtin")
oiafed_types = import_oiafed("oiafed.core.types")
oiafed_sync = import_oiafed("oiafed.callback.tracker_sync")

OIAFED_HOOKS = (
    "on_system_start",
    "on_system_stop",
    "on_train_begin",
    "on_train_end",
    "on_round_begin",
    "on_round_end",
    "on_fit_start",
    "on_fit_end",
    "on_epoch_start",
    "on_epoch_end",
    "on_step_start",
    "on_step_end",
    "on_evaluate_end",
)


class OiaFedRecorder(oiafed_base.Callback):  # type: ignore[misc, name-defined]
    """Every one of OiaFed's 13 hooks, async, with OiaFed's positional signatures; events in memory."""

    def __init__(self) -> None:
        self.events: list[tuple[str, tuple[Any, ...]]] = []

    async def on_system_start(self, system):
        self.events.append(("on_system_start", (system,)))

    async def on_system_stop(self, system):
        self.events.append(("on_system_stop", (system,)))

    async def on_train_begin(self, trainer, context=None):
        self.events.append(("on_train_begin", (trainer, context)))

    async def on_train_end(self, trainer, context=None):
        self.events.append(("on_train_end", (trainer, context)))

    async def on_round_begin(self, trainer, round_num, context=None):
        self.events.append(("on_round_begin", (trainer, round_num, context)))

    async def on_round_end(self, trainer, round_num, context=None):
        self.events.append(("on_round_end", (trainer, round_num, context)))

    async def on_fit_start(self, learner, config=None):
        self.events.append(("on_fit_start", (learner, config)))

    async def on_fit_end(self, learner, result=None):
        self.events.append(("on_fit_end", (learner, result)))

    async def on_epoch_start(self, learner, epoch):
        self.events.append(("on_epoch_start", (learner, epoch)))

    async def on_epoch_end(self, learner, epoch, metrics=None):
        self.events.append(("on_epoch_end", (learner, epoch, metrics)))

    async def on_step_start(self, learner, step):
        self.events.append(("on_step_start", (learner, step)))

    async def on_step_end(self, learner, step, metrics=None):
        self.events.append(("on_step_end", (learner, step, metrics)))

    async def on_evaluate_end(self, learner, result=None, context=None):
        self.events.append(("on_evaluate_end", (learner, result, context)))


class OiaFedFileRecorder(OiaFedRecorder):
    """The recorder as a client callback: each client's copy appends its events to one JSON-lines file."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    async def on_fit_start(self, learner, config=None):
        self._write("on_fit_start", config["epochs"])

    async def on_fit_end(self, learner, result=None):
        self._write("on_fit_end", result.metrics.total_epochs)

    async def on_epoch_start(self, learner, epoch):
        self._write("on_epoch_start", epoch)

    async def on_epoch_end(self, learner, epoch, metrics=None):
        self._write("on_epoch_end", metrics.epoch)

    async def on_step_start(self, learner, step):
        self._write("on_step_start", step)

    async def on_step_end(self, learner, step, metrics=None):
        assert isinstance(metrics, oiafed_types.StepMetrics) and metrics.loss > 0 and metrics.batch_size == 64
        self._write("on_step_end", step)

    def _write(self, hook: str, value: Any) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps([hook, value]) + "\n")


class StopOnAccuracy(oiafed_base.Callback):  # type: ignore[misc, name-defined]
    """A user's callback on OiaFed's base: stops once the round's accuracy passes ``threshold``."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.seen: list[float] = []

    async def on_round_end(self, trainer, round_num, context=None):
        accuracy = context["metrics"].metrics["accuracy"]
        self.seen.append(accuracy)
        if accuracy > self.threshold:
            trainer.stop_training = True


class NativeRounds(Callback):
    """A native callback beside the OiaFed ones: the rounds it saw."""

    def __init__(self) -> None:
        self.rounds: list[int] = []

    def on_round_end(self, round_num: int) -> None:
        self.rounds.append(round_num)


@pytest.fixture(scope="module")
def digits_val() -> tuple[list[Any], DataLoader]:
    """Digits over 4 clients, each holding out a fifth as validation data, and the test loader."""
    return digits_federation(num_clients=4, partition="iid", batch_size=64, seed=0, val_fraction=0.2)


@pytest.fixture
def federation(digits_val: tuple[list[Any], DataLoader]) -> Callable[..., FederatedTrainer]:
    def make(**kwargs: Any) -> FederatedTrainer:
        loaders, test = digits_val
        torch.manual_seed(0)
        args: dict[str, Any] = {"rounds": 3, "clients_per_round": 2, "seed": 0, **kwargs}
        return FederatedTrainer(MLP(hidden=16), loaders, test, **args)

    return make


def test_oiafed_callback_every_hook_fires_with_oiafeds_arguments(
    federation: Callable[..., FederatedTrainer], tmp_path: Path
) -> None:
    server, native, steps = OiaFedRecorder(), NativeRounds(), tmp_path / "client.jsonl"
    fed = federation(
        local_epochs=2,
        evaluate_clients=2,
        callbacks=[server, native],
        client_callbacks=[OiaFedFileRecorder(str(steps))],
    )

    result = fed.fit()

    counts = Counter(hook for hook, _ in server.events)
    # 3 rounds x 2 clients x 2 local epochs; the server sees no steps (they run inside the client fits)
    expected = {"on_system_start": 1, "on_train_begin": 1, "on_round_begin": 3, "on_fit_start": 6}
    expected |= {"on_epoch_start": 12, "on_epoch_end": 12, "on_fit_end": 6, "on_evaluate_end": 6}
    expected |= {"on_round_end": 3, "on_train_end": 1, "on_system_stop": 1}
    assert counts == expected and set(OIAFED_HOOKS) - set(counts) == {"on_step_start", "on_step_end"}
    assert native.rounds == [1, 2, 3]
    by_hook: dict[str, list[tuple[Any, ...]]] = {}
    for hook, args in server.events:
        by_hook.setdefault(hook, []).append(args)
    system = by_hook["on_system_start"][0][0]
    assert system.federated_trainer is fed and system.stop_training is False
    assert by_hook["on_train_begin"][0][1] == {"max_rounds": 3}
    assert [(r, c) for _, r, c in by_hook["on_round_begin"]] == [(1, {}), (2, {}), (3, {})]
    assert {c["epochs"] for _, c in by_hook["on_fit_start"]} == {2}
    assert [e for _, e in by_hook["on_epoch_start"]] == [1, 2] * 6
    for learner, epoch, metrics in by_hook["on_epoch_end"]:
        assert isinstance(metrics, oiafed_types.EpochMetrics) and metrics.epoch == epoch
        assert metrics.avg_loss > 0 and metrics.total_samples == learner.num_samples > 0
        assert learner._node_id == f"client_{learner.client_id}" and "accuracy" in metrics.metrics
    for learner, fit in by_hook["on_fit_end"]:
        assert isinstance(fit, oiafed_types.TrainResult) and fit.num_samples == learner.num_samples
        assert fit.metrics.total_epochs == 2 and [e.epoch for e in fit.metrics.epoch_history] == [1, 2]
        assert set(fit.weights) == set(fed.model.state_dict())
    for _, evaluated, context in by_hook["on_evaluate_end"]:
        assert isinstance(evaluated, oiafed_types.EvalResult) and evaluated.num_samples > 0
        assert "accuracy" in evaluated.metrics and context["type"] == "federated_evaluation"
    for (_, round_num, context), history in zip(by_hook["on_round_end"], result.history, strict=True):
        metrics = context["metrics"]
        assert isinstance(metrics, oiafed_types.RoundMetrics) and metrics.round_num == round_num == history.round_num
        assert metrics.num_clients == 2 and metrics.total_samples == sum(u.num_samples for u in history.updates)
        assert metrics.metrics == history.metrics and context["accuracy"] == history.metrics["accuracy"]
    assert by_hook["on_train_end"][0][1] == {"rounds_completed": 3}
    client = [tuple(json.loads(line)) for line in steps.read_text().splitlines()]
    client_counts = Counter(hook for hook, _ in client)
    batches = sum(2 * len(fed.clients[u.client_id].data) for r in result.history for u in r.updates)
    assert client_counts["on_fit_start"] == client_counts["on_fit_end"] == 6
    assert client_counts["on_epoch_start"] == client_counts["on_epoch_end"] == 12
    assert client_counts["on_step_start"] == client_counts["on_step_end"] == batches
    assert [v for h, v in client if h == "on_epoch_end"] == [1, 2] * 6
    assert [v for h, v in client if h == "on_fit_end"] == [2] * 6  # each fit's TrainResult holds its 2 epochs


def test_oiafed_early_stopping_stops_at_its_round(federation: Callable[..., FederatedTrainer]) -> None:
    # min_delta larger than any change: round 1 sets the best, round 2 is one round without improvement
    stopper = oiafed_builtin.EarlyStopping(monitor="val_loss", patience=1, min_delta=10.0, mode="min")
    fed = federation(rounds=4, callbacks=[stopper])

    result = fed.fit()

    assert [r.round_num for r in result.history] == [1, 2]
    assert result.stopped_early and stopper.stopped and stopper.wait == 1


def test_oiafed_user_callback_reads_context_metrics_and_stops(federation: Callable[..., FederatedTrainer]) -> None:
    stopper = StopOnAccuracy(threshold=0.0)
    fed = federation(rounds=3, callbacks=[stopper])

    result = fed.fit()

    assert len(result.history) == 1 and result.stopped_early
    assert stopper.seen == [result.history[0].metrics["accuracy"]]


def test_oiafed_model_checkpoint_writes_loadable_state_dicts(
    federation: Callable[..., FederatedTrainer], tmp_path: Path
) -> None:
    fed = federation(rounds=3, callbacks=[oiafed_builtin.ModelCheckpoint(save_dir=str(tmp_path), save_freq=2)])

    fed.fit()

    # OiaFed names a file after round_num + 1 and saves when that is a multiple of save_freq: rounds 1 and 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_round_2.pt", "model_round_4.pt"]
    final = torch.load(tmp_path / "model_round_4.pt", weights_only=True)
    assert final.keys() == fed.model.state_dict().keys()
    assert all(torch.equal(final[k], v) for k, v in fed.model.state_dict().items())


def test_oiafed_logging_callback_logs_real_values(federation: Callable[..., FederatedTrainer]) -> None:
    from loguru import logger

    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(message.record["message"]), level="DEBUG")
    try:
        federation(rounds=1, callbacks=[oiafed_builtin.LoggingCallback()]).fit()
    finally:
        logger.remove(sink)

    epochs = [line for line in lines if " Epoch 1, loss=" in line]
    rounds = [line for line in lines if line.startswith("Round 1, clients=2, samples=")]
    assert len(epochs) == 2 and all("N/A" not in line and "samples=0" not in line for line in epochs)
    assert epochs[0].startswith("[client_") and "accuracy=" in epochs[0]
    assert len(rounds) == 1 and "accuracy=" in rounds[0]


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is not None, reason="mlflow is installed")
def test_oiafed_mlflow_callback_without_mlflow_is_refused_in_one_line(
    federation: Callable[..., FederatedTrainer],
) -> None:
    with pytest.raises(ArgumentError, match=r"^`callbacks`: MLflowCallback .* mlflow is not installed") as info:
        federation(callbacks=[oiafed_builtin.MLflowCallback()])
    assert "\n" not in str(info.value)


def test_oiafed_tracker_sync_callback_is_refused_in_one_line(federation: Callable[..., FederatedTrainer]) -> None:
    with pytest.raises(ArgumentError, match=r"^`callbacks`: TrackerSyncCallback is an OiaFed SyncCallback") as info:
        federation(callbacks=[oiafed_sync.TrackerSyncCallback()])
    assert "\n" not in str(info.value)
