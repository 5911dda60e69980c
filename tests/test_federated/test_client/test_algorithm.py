"""Client algorithms: a payload per client down, a reply up, state kept per client across fits and a resume."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import LightningModule
from torch.utils.data import DataLoader

from federated import MLP, Client, ClientFailure, ClientRunner, ClientUpdate, FederatedTrainer
from federated.client import ClientAlgorithm
from federated.messages import FitTask
from federated.strategies.fedavg import FedAvg

QUIET: dict[str, Any] = {"enable_progress_bar": False, "enable_model_summary": False}


class Echo(ClientAlgorithm):
    """Replies with twice the payload's ``x`` and the fits this client had before; keeps that count."""

    name = "echo"

    def begin(self, weights: Any, payload: Any, state: Any) -> None:
        self.x, self.fits = payload["x"], state.get("fits", 0)

    def end(self, module: LightningModule) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"twice": 2 * self.x, "fits_before": self.fits}, {"fits": self.fits + 1}


class Poison(ClientAlgorithm):
    """Replies with a NaN for client 1, and keeps a count that a failed fit must not change."""

    name = "poison"

    def begin(self, weights: Any, payload: Any, state: Any) -> None:
        self.client, self.fits = payload["client"], state.get("fits", 0)

    def end(self, module: LightningModule) -> tuple[dict[str, Any], dict[str, Any]]:
        value = float("nan") if self.client == 1 else 1.0
        return {"values": [torch.tensor([value])]}, {"fits": self.fits + 1}


class Talking(FedAvg):
    """FedAvg that sends each client its id under ``algorithm`` and records every reply's payload."""

    def __init__(self, algorithm: ClientAlgorithm, key: str = "x") -> None:
        super().__init__()
        self.algorithm, self.key = algorithm, key
        self.replies: list[tuple[int, int, dict[str, Any]]] = []
        self.round_num = 0

    def client_algorithms(self) -> list[ClientAlgorithm]:
        return [self.algorithm]

    def begin_round(self, round_num: int, weights: Any) -> None:
        super().begin_round(round_num, weights)
        self.round_num = round_num

    def configure_fit(self, client_id: int, round_num: int) -> dict[str, Any]:
        return {self.algorithm.name: {self.key: torch.tensor(float(client_id))}}

    def accumulate(self, update: ClientUpdate) -> None:
        self.replies.append((self.round_num, update.client_id, update.payload))
        super().accumulate(update)


def _echo_run(loaders: list[DataLoader], make_model: Callable[..., MLP], rounds: int, **kwargs: Any) -> Any:
    strategy = Talking(Echo())
    fed = FederatedTrainer(
        make_model(), loaders[:3], rounds=rounds, clients_per_round=2, strategy=strategy, seed=0,
        on_error="raise", trainer_kwargs=QUIET, **kwargs,
    )
    return fed, strategy


def test_client_algorithm_gets_its_payload_and_state_and_its_reply_reaches_the_strategy(
    digits4: tuple[list[DataLoader], DataLoader], make_model: Callable[..., MLP]
) -> None:
    fed, strategy = _echo_run(digits4[0], make_model, rounds=3)

    fed.fit()

    # Assert: every reply carries its own client's payload doubled, and the count of that client's earlier fits
    fits: dict[int, int] = {}
    for _, client_id, payload in strategy.replies:
        assert torch.equal(payload["echo"]["twice"], torch.tensor(2.0 * client_id))
        assert payload["echo"]["fits_before"] == fits.get(client_id, 0)
        fits[client_id] = fits.get(client_id, 0) + 1
    assert len(strategy.replies) == 3 * 2
    assert {c.client_id: c.algorithm_states.get("echo", {}).get("fits", 0) for c in fed.clients} == {
        i: fits.get(i, 0) for i in range(3)
    }


def test_client_algorithm_state_survives_a_resume(
    digits4: tuple[list[DataLoader], DataLoader], make_model: Callable[..., MLP], tmp_path: Path
) -> None:
    # Prepare: the uninterrupted run's replies, and a run of 2 of its 3 rounds
    whole, whole_strategy = _echo_run(digits4[0], make_model, rounds=3)
    whole.fit()
    first, _ = _echo_run(digits4[0], make_model, rounds=2, checkpoint_dir=tmp_path)
    first.fit()

    # Execute: fresh objects carry on from the checkpoint for the third round
    resumed, strategy = _echo_run(digits4[0], make_model, rounds=3, checkpoint_dir=tmp_path)
    resumed.fit(resume_from="auto")

    # Assert: the third round saw the states the uninterrupted run had, and so ends with its weights
    assert strategy.replies == [r for r in whole_strategy.replies if r[0] == 3]
    assert [c.algorithm_states for c in resumed.clients] == [c.algorithm_states for c in whole.clients]
    for name, tensor in whole.global_weights.items():
        assert torch.equal(resumed.global_weights[name], tensor), name


def test_non_finite_payload_fails_the_client_and_keeps_its_state(
    digits4: tuple[list[DataLoader], DataLoader], make_model: Callable[..., MLP]
) -> None:
    loaders, _ = digits4
    model = make_model()
    weights = model.state_dict()
    runner = ClientRunner(model, local_epochs=1, trainer_kwargs={**QUIET, "logger": False}, algorithms=[Poison()])
    clients = [Client(0, loaders[0]), Client(1, loaders[1])]

    outcomes = [
        runner.fit(c, FitTask(client_id=c.client_id, round_num=1, seed=0, weights=weights,
                              payload={"poison": {"client": c.client_id}}))
        for c in clients
    ]

    assert isinstance(outcomes[0], ClientUpdate) and clients[0].algorithm_states == {"poison": {"fits": 1}}
    assert isinstance(outcomes[1], ClientFailure)
    assert outcomes[1].error == "non-finite payload in round 1: poison.values.0"
    assert clients[1].algorithm_states == {}


class Other(Echo):
    name = "other"
    conflicts = ("echo",)


class Both(FedAvg):
    def __init__(self, algorithms: list[ClientAlgorithm]) -> None:
        super().__init__()
        self.algorithms = algorithms

    def client_algorithms(self) -> list[ClientAlgorithm]:
        return self.algorithms


@pytest.mark.parametrize(
    ("algorithms", "error", "message"),
    [
        ([Echo(), Other()], ValueError, "Both: client algorithm 'other' cannot run in the same fit as 'echo'"),
        ([Echo(), Echo()], ValueError, "Both: two client algorithms named 'echo' in one fit"),
        ([object()], TypeError, r"Both.client_algorithms\(\) must give ClientAlgorithm objects with a `name`"),
    ],
    ids=["conflict", "same-name", "not-an-algorithm"],
)
def test_client_algorithms_that_cannot_run_together_are_refused_at_build_time(
    digits4: tuple[list[DataLoader], DataLoader], make_model: Callable[..., MLP],
    algorithms: list[Any], error: type[Exception], message: str,
) -> None:
    with pytest.raises(error, match=message):
        FederatedTrainer(make_model(), digits4[0][:2], rounds=1, strategy=Both(algorithms))
