"""With no noise, each DP wrapper aggregates as Flower 1.41's wrapper of the same name on the same updates."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from federated.messages import ClientUpdate
from federated.privacy import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    UpdateClipping,
)
from federated.strategies import FedAvg

flwr = pytest.importorskip("flwr")
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp.mod import adaptiveclipping_mod, fixedclipping_mod  # noqa: E402
from flwr.serverapp import strategy as flower  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

pytestmark = pytest.mark.flower

START = {"layer.weight": torch.zeros(2, 3), "layer.bias": torch.zeros(2)}
# updates of norm 0.5, 2.0 and 6.0: under, and over, the clipping norm 1.0
INITIAL = {"initial_clipping_norm": 1.0}
SCALES = (0.5 / math.sqrt(8), 2.0 / math.sqrt(8), 6.0 / math.sqrt(8))


class Layer(nn.Module):
    """What a client's module holds: the two tensors of START, the weights its fit ended with."""

    def __init__(self, weights: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 2)
        self.load_state_dict(weights)


@pytest.fixture(autouse=True)
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``flwr-serverapp`` sets before a ServerApp builds Messages."""
    for name, value in (("_run_id", 1), ("_node_id", 1), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


def client_weights() -> list[dict[str, torch.Tensor]]:
    """Three clients' trained weights: START moved by updates of norms 0.5, 2 and 6, each in its own direction."""
    signs = (torch.tensor([1.0, -1.0]), torch.tensor([1.0, 1.0]), torch.tensor([-1.0, 1.0]))
    return [
        {"layer.weight": scale * torch.ones(2, 3) * sign[:, None], "layer.bias": scale * sign}
        for scale, sign in zip(SCALES, signs, strict=True)
    ]


def train_message(weights: dict[str, torch.Tensor], config: dict[str, Any]) -> Message:
    content = RecordDict({"arrays": ArrayRecord(weights), "config": ConfigRecord(config)})
    return Message(content, dst_node_id=1, message_type="train")


def reply(weights: dict[str, torch.Tensor]) -> Message:
    content = RecordDict({"arrays": ArrayRecord(weights), "metrics": MetricRecord({"num-examples": 10})})
    return Message(content, dst_node_id=1, message_type="train")


def flower_client(mod: Callable[..., Message], weights: dict[str, torch.Tensor], clipping_norm: float) -> Message:
    """Flower's client mod around a ClientApp whose fit ended with ``weights``."""
    return mod(train_message(START, {"clipping_norm": clipping_norm}), None, lambda msg, ctxt: reply(weights))


def flower_aggregate(wrapper: Any, replies: list[Message]) -> dict[str, torch.Tensor]:
    arrays, _ = wrapper.aggregate_train(1, replies)
    return {name: torch.from_numpy(array.numpy()) for name, array in arrays.items()}


def run_ours(wrapper: Any) -> dict[str, torch.Tensor]:
    """One round of ``wrapper`` on the three clients, the client side's clipping done by UpdateClipping."""
    wrapper.begin_federation(num_clients=5, clients_per_round=3)
    wrapper.begin_round(1, START)
    for client_id, weights in enumerate(client_weights()):
        payload: dict[str, Any] = {}
        if wrapper.client_side:
            clipping, module = UpdateClipping(), Layer(weights)
            clipping.begin(START, wrapper.configure_fit(client_id, 1)[UpdateClipping.name], {})
            payload = {UpdateClipping.name: clipping.end(module)[0]}  # type: ignore[arg-type]
            weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
        wrapper.accumulate(ClientUpdate(client_id=client_id, num_samples=10, weights=weights, payload=payload))
    return dict(wrapper.finish_round())


def assert_equal(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> None:
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], atol=1e-6, rtol=0)


def test_server_side_fixed_clipping_aggregates_as_flowers() -> None:
    # Prepare: Flower's wrapper with the global weights it sent
    theirs = flower.DifferentialPrivacyServerSideFixedClipping(flower.FedAvg(), 0.0, 1.0, 3)
    theirs.current_arrays = ArrayRecord(START)

    # Execute
    expected = flower_aggregate(theirs, [reply(w) for w in client_weights()])
    got = run_ours(DifferentialPrivacyServerSideFixedClipping(FedAvg(weighted=False), 0.0, 1.0, 3))

    # Assert: the norm-6 and norm-2 updates were clipped to 1 before averaging, as Flower's
    assert_equal(got, expected)
    assert not torch.equal(got["layer.bias"], sum(w["layer.bias"] for w in client_weights()) / 3)


def test_client_side_fixed_clipping_aggregates_as_flowers_mod_and_wrapper() -> None:
    theirs = flower.DifferentialPrivacyClientSideFixedClipping(flower.FedAvg(), 0.0, 1.0, 3)

    expected = flower_aggregate(theirs, [flower_client(fixedclipping_mod, w, 1.0) for w in client_weights()])
    got = run_ours(DifferentialPrivacyClientSideFixedClipping(FedAvg(weighted=False), 0.0, 1.0, 3))

    assert_equal(got, expected)


@pytest.mark.parametrize("client_side", [False, True], ids=["server_side", "client_side"])
def test_adaptive_clipping_aggregates_as_flowers_and_steps_its_norm_the_papers_way(client_side: bool) -> None:
    # Prepare: initial norm 1.0, so 2 of the 3 updates are clipped: more than the target share 0.5
    if client_side:
        theirs = flower.DifferentialPrivacyClientSideAdaptiveClipping(flower.FedAvg(), 0.0, 3, **INITIAL)
        replies = [flower_client(adaptiveclipping_mod, w, 1.0) for w in client_weights()]
        ours = DifferentialPrivacyClientSideAdaptiveClipping(FedAvg(weighted=False), 0.0, 3, **INITIAL)
    else:
        theirs = flower.DifferentialPrivacyServerSideAdaptiveClipping(flower.FedAvg(), 0.0, 3, **INITIAL)
        theirs.current_arrays = ArrayRecord(START)
        replies = [reply(w) for w in client_weights()]
        ours = DifferentialPrivacyServerSideAdaptiveClipping(FedAvg(weighted=False), 0.0, 3, **INITIAL)

    # Execute
    expected = flower_aggregate(theirs, replies)
    got = run_ours(ours)

    # Assert: the same clipped aggregate; the norm's step as large as Flower's, the other way: up, since most
    # updates were clipped (Andrew et al.: C * exp(lr * (2/3 - 0.5)))
    assert_equal(got, expected)
    assert ours.clipping_norm == pytest.approx(math.exp(0.2 * (2 / 3 - 0.5)), abs=1e-12)
    assert math.log(ours.clipping_norm) == pytest.approx(-math.log(theirs.clipping_norm), abs=1e-12)
