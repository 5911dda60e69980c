"""The weights a Flower message carries come back bit for bit, through Flower's own serialization."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("flwr")
pytestmark = pytest.mark.flower

from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects  # noqa: E402
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents  # noqa: E402

from federated.backends import flower_messages as messages  # noqa: E402


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
    record = messages.weights_record(weights)
    contents = {object_id: obj.deflate() for object_id, obj in get_all_nested_objects(record).items()}
    received = messages.read_weights(inflate_object_from_contents(record.object_id, contents))

    # Assert
    assert list(received) == list(weights)
    for name, tensor in weights.items():
        assert received[name].dtype == tensor.dtype, name
        assert received[name].shape == tensor.shape, name
        assert torch.equal(received[name], tensor), name
