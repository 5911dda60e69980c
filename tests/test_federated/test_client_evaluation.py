"""Clients that validate on their own data: local validation in each fit, federated evaluation of the global model."""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning
import pytest
import pytorch_lightning
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

from callbacks import ArgumentError, Callback, EarlyStopping, MetricsLogger, TensorBoard
from federated import MLP, FederatedTrainer
from federated.client.trainer_args import CLIENT_TRAINER_DEFAULTS

Pairs = list[tuple[DataLoader, DataLoader]]


def with_validation(loaders: list[DataLoader], share: float = 0.25) -> Pairs:
    """Each client's loader split into (train, val): its first ``share`` of samples validate."""
    pairs = []
    for loader in loaders:
        dataset = loader.dataset
        cut = int(len(dataset) * share)  # type: ignore[arg-type]
        train = Subset(dataset, range(cut, len(dataset)))  # type: ignore[arg-type]
        val = Subset(dataset, range(cut))
        pairs.append((DataLoader(train, batch_size=64, shuffle=True), DataLoader(val, batch_size=64)))
    return pairs


@pytest.fixture(scope="module")
def pairs4(digits4: Any) -> Pairs:
    return with_validation(digits4[0])


class ValidationCounter(Callback):
    """A client callback that counts its validation hooks and keeps the last logs it saw there."""

    def __init__(self) -> None:
        self.starts = 0
        self.ends = 0
        self.logs: dict[str, float] = {}

    def state_dict(self) -> dict[str, Any]:
        return {"starts": self.starts, "ends": self.ends}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.starts, self.ends = state_dict["starts"], state_dict["ends"]

    def on_validation_start(self) -> None:
        self.starts += 1

    def on_validation_end(self, logs: dict[str, float]) -> None:
        self.ends += 1
        self.logs = dict(logs)


def test_client_fits_validate_on_their_own_data_and_fire_the_validation_hooks(
    pairs4: Pairs, make_model: Callable[..., MLP]
) -> None:
    fed = FederatedTrainer(
        make_model(), pairs4, rounds=2, local_epochs=2, client_callbacks=[ValidationCounter()], seed=0
    )
    result = fed.fit()

    for client in fed.clients:  # every client trained twice, two local epochs each: four validations
        (counter,) = client.callbacks
        assert (counter.starts, counter.ends) == (4, 4)
        assert {"val_loss", "accuracy"} <= set(counter.logs)
    update = result.history[-1].updates[0]
    assert {"val_loss", "accuracy", "train_loss"} <= set(update.metrics)
    assert all("val_loss" in epoch for epoch in update.epoch_metrics)  # each local epoch validated
    assert 0.0 < result.history[-1].metrics["accuracy"] <= 1.0  # no server data: the clients' local validation


def test_federated_evaluation_is_the_weighted_mean_of_each_clients_validate(
    pairs4: Pairs, make_model: Callable[..., MLP]
) -> None:
    fed = FederatedTrainer(make_model(), pairs4, rounds=2, clients_per_round=2, evaluate_clients=1.0, seed=0)
    result = fed.fit()

    last = result.history[-1]
    assert [e.client_id for e in last.evaluations] == [0, 1, 2, 3]
    model = make_model()
    model.load_state_dict(result.weights)
    validator = lightning.Trainer(**CLIENT_TRAINER_DEFAULTS)
    by_hand = []
    for client, evaluation in zip(fed.clients, last.evaluations, strict=True):
        (out,) = validator.validate(model, dataloaders=client.val_data, verbose=False)
        assert evaluation.num_samples == len(client.val_data.dataset)  # type: ignore[arg-type]
        assert evaluation.metrics["accuracy"] == pytest.approx(out["accuracy"], abs=1e-6)
        by_hand.append((evaluation.num_samples, out))
    total = sum(n for n, _ in by_hand)
    for name in ("accuracy", "val_loss"):
        mean = sum(n * out[name] for n, out in by_hand) / total
        assert last.metrics[f"clients/{name}"] == pytest.approx(mean, abs=1e-6)


def test_evaluation_sampling_is_seeded_every_n_rounds_and_reaches_clients_that_did_not_train(
    pairs4: Pairs, make_model: Callable[..., MLP]
) -> None:
    def run(seed: int) -> list[tuple[list[int], list[int]]]:
        fed = FederatedTrainer(
            make_model(), pairs4, rounds=6, clients_per_round=1, evaluate_clients=2, evaluate_every=2, seed=seed
        )
        return [(r.selected, [e.client_id for e in r.evaluations]) for r in fed.fit().history]

    first, again, other = run(0), run(0), run(1)
    assert first == again
    assert [len(evaluated) for _, evaluated in first] == [0, 2, 0, 2, 0, 2]
    assert [evaluated for _, evaluated in first] != [evaluated for _, evaluated in other]
    assert any(set(evaluated) - set(selected) for selected, evaluated in first)


def test_a_users_aggregation_function_replaces_the_weighted_mean(
    pairs4: Pairs, make_model: Callable[..., MLP]
) -> None:
    seen: list[list[tuple[int, dict[str, float]]]] = []

    def worst(pairs: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
        seen.append(pairs)
        return {"accuracy": min(m["accuracy"] for _, m in pairs)}

    fed = FederatedTrainer(
        make_model(), pairs4, rounds=1, evaluate_clients=1.0, evaluate_metrics_aggregation_fn=worst, seed=0
    )
    last = fed.fit().history[-1]

    assert last.metrics["clients/accuracy"] == min(e.metrics["accuracy"] for e in last.evaluations)
    assert "clients/val_loss" not in last.metrics
    assert [n for n, _ in seen[0]] == [e.num_samples for e in last.evaluations]


def test_a_nan_evaluation_is_left_out_of_the_mean_with_a_warning_naming_it(
    pairs4: Pairs, make_model: Callable[..., MLP], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: client 1 validates on NaN features, so its val_loss is NaN
    (train0, val0), (train1, _) = pairs4[:2]
    nan_val = DataLoader(TensorDataset(torch.full((8, 64), float("nan")), torch.zeros(8, dtype=torch.long)))
    fed = FederatedTrainer(make_model(), [(train0, val0), (train1, nan_val)], rounds=1, evaluate_clients=1.0, seed=0)
    # Execute
    with caplog.at_level(logging.WARNING, logger="federated"):
        last = fed.fit().history[-1]
    # Assert: the mean is client 0's, and the warning names the metric and client 1
    assert last.metrics["clients/val_loss"] == last.evaluations[0].metrics["val_loss"]
    assert "clients/val_loss: client(s) 1 evaluated it as NaN or infinite; left out of its mean" in caplog.text


@pytest.mark.parametrize(
    ("returned", "match"),
    [
        ({"accuracy": "high"}, r"must return a dict of metric names to numbers; its 'accuracy' is str 'high'"),
        ([("accuracy", 0.5)], r"must return a dict of metric names to numbers, got list"),
    ],
)
def test_an_aggregation_function_returning_no_numbers_is_refused_in_one_line(
    pairs4: Pairs, make_model: Callable[..., MLP], returned: Any, match: str
) -> None:
    fed = FederatedTrainer(
        make_model(), pairs4[:2], rounds=1, evaluate_clients=1.0, evaluate_metrics_aggregation_fn=lambda _: returned
    )
    with pytest.raises(TypeError, match=match):
        fed.fit()


def test_clients_accuracy_drives_early_stopping_with_no_server_data(
    pairs4: Pairs, make_model: Callable[..., MLP]
) -> None:
    stop = EarlyStopping(metric="clients/accuracy", mode="max", patience=1, min_delta=0.5)
    fed = FederatedTrainer(make_model(), pairs4, None, rounds=6, evaluate_clients=2, callbacks=[stop], seed=0)
    result = fed.fit()

    assert result.stopped_early and len(result.history) == 2  # round 2 does not gain 0.5 on round 1
    assert all("clients/accuracy" in r.metrics for r in result.history)


class WithoutValidation(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(64, 10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"evaluate_clients": 0}, r"`evaluate_clients`: must be an int in \[1, 4\], got 0"),
        ({"evaluate_clients": 5}, r"`evaluate_clients`: must be an int in \[1, 4\], got 5; 4 clients have"),
        ({"evaluate_clients": 1.5}, r"`evaluate_clients`: must be a number in \(0, 1\], got 1.5"),
        ({"evaluate_every": 0}, r"`evaluate_every`: must be an int in \[1, inf\), got 0"),
        ({"round_timeout": 0}, r"`round_timeout`: must be a number in \(0, inf\), got 0"),
    ],
)
def test_bad_evaluation_arguments_fail_at_construction(
    pairs4: Pairs, make_model: Callable[..., MLP], kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ArgumentError, match=match):
        FederatedTrainer(make_model(), pairs4, **kwargs)


def test_evaluation_needs_validation_data_and_a_validation_step(
    digits4: Any, pairs4: Pairs, make_model: Callable[..., MLP]
) -> None:
    with pytest.raises(ArgumentError, match="`evaluate_clients`: needs clients with validation data"):
        FederatedTrainer(make_model(), digits4[0], evaluate_clients=2)
    with pytest.raises(ArgumentError, match="`model`: WithoutValidation has no `validation_step`"):
        FederatedTrainer(WithoutValidation(), pairs4)
    with pytest.raises(TypeError, match="`evaluate_metrics_aggregation_fn` must be a function"):
        FederatedTrainer(make_model(), pairs4, evaluate_clients=2, evaluate_metrics_aggregation_fn="mean")


class Pieces(lightning.LightningDataModule):
    """A data module with a train and a validation loader."""

    def __init__(self, pair: tuple[DataLoader, DataLoader]) -> None:
        super().__init__()
        self.pair = pair

    def train_dataloader(self) -> DataLoader:
        return self.pair[0]

    def val_dataloader(self) -> DataLoader:
        return self.pair[1]


def test_a_lightning_datamodule_is_a_clients_data(pairs4: Pairs, make_model: Callable[..., MLP]) -> None:
    fed = FederatedTrainer(make_model(), [Pieces(p) for p in pairs4], rounds=1, evaluate_clients=1.0, seed=0)
    by_pairs = FederatedTrainer(make_model(), pairs4, rounds=1, evaluate_clients=1.0, seed=0)

    assert [c.num_val_samples for c in fed.clients] == [c.num_val_samples for c in by_pairs.clients]
    assert fed.fit().metrics == by_pairs.fit().metrics


class StandalonePieces(pytorch_lightning.LightningDataModule):
    """A ``pytorch_lightning`` data module (the standalone package's, which Opacus's wrapper subclasses)."""

    def __init__(self, pair: tuple[DataLoader, DataLoader], with_val: bool = True) -> None:
        super().__init__()
        self.pair, self.with_val = pair, with_val

    def train_dataloader(self) -> DataLoader:
        return self.pair[0]

    def val_dataloader(self) -> DataLoader:
        if not self.with_val:
            return super().val_dataloader()  # pytorch_lightning's own: raises, as for a module that lacks one
        return self.pair[1]


class TrainOnly(pytorch_lightning.LightningDataModule):
    """A ``pytorch_lightning`` data module with no validation loader."""

    def __init__(self, loader: DataLoader) -> None:
        super().__init__()
        self.loader = loader

    def train_dataloader(self) -> DataLoader:
        return self.loader


def test_opacus_dp_lightning_datamodule_is_a_clients_data(pairs4: Pairs, make_model: Callable[..., MLP]) -> None:
    from opacus.data_loader import DPDataLoader
    from opacus.lightning import DPLightningDataModule

    data = [DPLightningDataModule(StandalonePieces(pairs4[0])), DPLightningDataModule(TrainOnly(pairs4[1][0]))]
    fed = FederatedTrainer(make_model(), data, rounds=1, evaluate_clients=1.0, seed=0)

    assert isinstance(fed.clients[0].data, DPDataLoader) and fed.clients[0].val_data is pairs4[0][1]
    assert fed.clients[1].val_data is None
    assert [u.client_id for u in fed.fit().history[0].updates] == [0, 1]


def test_tensorboard_and_metrics_logger_record_the_clients_evaluations(
    pairs4: Pairs, make_model: Callable[..., MLP], tmp_path: Path
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = MetricsLogger(path=str(tmp_path / "metrics.csv"))
    board = TensorBoard(log_dir=str(tmp_path / "tb"))
    fed = FederatedTrainer(
        make_model(), pairs4, rounds=2, evaluate_clients=2, callbacks=[board, logger], on_error="raise", seed=0
    )
    result = fed.fit()

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    for r in result.history:
        for evaluation in r.evaluations:
            (point,) = [e for e in events.Scalars(f"client/{evaluation.client_id}/evaluate/accuracy")
                        if e.step == r.round_num]
            assert point.value == pytest.approx(evaluation.metrics["accuracy"])
    assert [e.value for e in events.Scalars("clients/accuracy")] == pytest.approx(
        [r.metrics["clients/accuracy"] for r in result.history]
    )
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(row["clients/accuracy"]) for row in rows] == pytest.approx(
        [r.metrics["clients/accuracy"] for r in result.history]
    )
