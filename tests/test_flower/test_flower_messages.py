"""The weights a Flower message carries come back bit for bit, through Flower's own serialization."""

from __future__ import annotations

from typing import Any

import pytest
import torch

pytest.importorskip("flwr")
pytestmark = pytest.mark.flower

from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects  # noqa: E402
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents  # noqa: E402

from federated.backends import flower_messages as messages  # noqa: E402
from federated.backends import flower_records as records  # noqa: E402
from federated.messages import ClientUpdate, FitTask  # noqa: E402


def test_weights_of_every_dtype_survive_flowers_serialization() -> None:
    # Prepare: bfloat16 (which NumPy cannot hold) beside float32, float16, int64 and empty and strided tensors
    gen = torch.Generator().manual_seed(0)
    weights = {
        "linear.weight": torch.randn(300, 400, generator=gen).bfloat16(),
        "linear.bias": torch.randn(400, generator=gen),
        "half": torch.randn(7, generator=gen).half(),
        "bn.num_batches_tracked": torch.tensor(12),
        "empty": torch.zeros(0, 3, dtype=torch.bfloat16),
        "transposed": torch.randn(3, 5, generator=gen).bfloat16().t(),
    }

    # Execute: deflate the record into Flower's objects, as a message is sent, and inflate it again
    record = records.weights_record(weights)
    contents = {object_id: obj.deflate() for object_id, obj in get_all_nested_objects(record).items()}
    received = records.read_weights(inflate_object_from_contents(record.object_id, contents))

    # Assert
    assert list(received) == list(weights)
    for name, tensor in weights.items():
        assert received[name].dtype == tensor.dtype, name
        assert received[name].shape == tensor.shape, name
        assert torch.equal(received[name], tensor), name


SETUP = {
    "local_epochs": 1, "trainer_kwargs": {}, "reuse_trainer": True, "keep_optimizer_state": False, "local_keys": [],
}


def _through_flower(record: Any) -> Any:
    """``record`` deflated into Flower's objects, as a message is sent, and inflated again."""
    contents = {object_id: obj.deflate() for object_id, obj in get_all_nested_objects(record).items()}
    return inflate_object_from_contents(record.object_id, contents)


def test_task_and_reply_payloads_survive_flowers_serialization_bit_for_bit() -> None:
    # Prepare: a payload of nested tensors (bfloat16 among them) and primitives, both ways
    gen = torch.Generator().manual_seed(0)
    payload = {
        "scaffold": {"c": {"w": torch.randn(5, 3, generator=gen).bfloat16(), "b": torch.randn(3, generator=gen)}},
        "fednova": {"steps": 7, "tags": ["a", 1.5, None]},
    }
    shared = messages.round_record(round_num=2, config="seed: 0\n", setup=messages.setup_text(SETUP))
    task = FitTask(client_id=3, round_num=2, seed=11, weights={}, lr_scale=0.5, payload=payload)
    update = ClientUpdate(client_id=3, num_samples=9, weights={"w": torch.ones(2)}, payload=payload)

    # Execute
    request = messages.read_request(_through_flower(messages.request(records.weights_record({}), shared, task, {})))
    reply, _ = messages.read_fit_reply(_through_flower(messages.fit_reply(update, {})))

    # Assert
    assert isinstance(reply, ClientUpdate)
    received = request.fit_task()
    assert (received.client_id, received.round_num, received.seed, received.lr_scale) == (3, 2, 11, 0.5)
    for got in (received.payload, reply.payload):
        assert got["fednova"] == payload["fednova"]
        for name, tensor in payload["scaffold"]["c"].items():
            assert got["scaffold"]["c"][name].dtype == tensor.dtype
            assert torch.equal(got["scaffold"]["c"][name], tensor), name
