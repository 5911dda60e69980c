"""How values travel in the records of Flower messages, and what a SuperNode keeps in its own.

Weights go in an ``ArrayRecord`` as NumPy arrays, bit for bit; ``bfloat16`` tensors, which NumPy
cannot hold, as their raw bytes under the dtype name ``bfloat16``. States and payloads (tensors and
primitives) go as ``torch.save`` bytes, read back with ``torch.load(weights_only=True)``: nothing
is unpickled with code execution. Settings and names go as JSON text. What a client's algorithms
keep between its fits stays on its SuperNode, in the node's ``context.state``.

Nothing here imports ``flwr`` at import time: the ``flower`` extra is optional, and
:func:`import_flwr` turns its absence into one line that says what to install.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import torch

from callbacks.arguments import one_line

__all__ = [
    "MISSING_FLWR",
    "from_bytes",
    "import_flwr",
    "json_field",
    "keep_algorithm_states",
    "node_algorithm_states",
    "read_payload",
    "read_weights",
    "to_bytes",
    "weights_record",
]

MISSING_FLWR = "backend 'flower' needs the flower extra: pip install 'lightning-bridge[flower]'"


def import_flwr() -> Any:
    """``flwr.app``, or an ``ImportError`` whose one line names the extra to install."""
    try:
        import flwr.app
    except ImportError as exc:
        raise ImportError(MISSING_FLWR) from exc
    return flwr.app


def to_bytes(value: Any) -> bytes:
    """``value`` written by ``torch.save``."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def from_bytes(data: Any, field: str = "state") -> Any:
    """The inverse of :func:`to_bytes`, loading tensors and primitives only (``weights_only``: no code runs).

    Raises:
        ValueError: ``data`` is not bytes, or holds anything beyond tensors and primitives.
    """
    if not isinstance(data, bytes):
        raise ValueError(f"`{field}` must be bytes written by torch.save, got {type(data).__name__}")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"`{field}` holds more than tensors and primitives, refused unread: {one_line(exc)}") from exc


_BFLOAT16 = "bfloat16"  # NumPy has no bfloat16: such a tensor travels as its raw bytes, under this dtype name


def weights_record(weights: Mapping[str, torch.Tensor]) -> Any:
    """``weights`` as a Flower ArrayRecord (NumPy arrays by name, bit for bit; ``bfloat16`` as raw bytes)."""
    flwr = import_flwr()
    record = flwr.ArrayRecord()
    for name, tensor in weights.items():
        tensor = tensor.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            raw = tensor.contiguous().view(torch.int16).numpy().tobytes()
            record[name] = flwr.Array(dtype=_BFLOAT16, shape=tuple(tensor.shape), stype="raw", data=raw)
        else:
            record[name] = flwr.Array(tensor)
    return record


def read_weights(record: Any) -> dict[str, torch.Tensor]:
    """The inverse of :func:`weights_record`: CPU tensors by name."""
    return {name: _tensor(array) for name, array in record.items()}


def _tensor(array: Any) -> torch.Tensor:
    if array.dtype != _BFLOAT16:
        return torch.from_numpy(array.numpy().copy())
    if not array.data:  # torch.frombuffer refuses an empty buffer
        return torch.empty(array.shape, dtype=torch.bfloat16)
    return torch.frombuffer(bytearray(array.data), dtype=torch.bfloat16).reshape(array.shape)


_KEPT = "algorithm-states"
"""The record of a SuperNode's ``context.state`` holding its clients' algorithm states, by client id."""


def node_algorithm_states(node_state: Any, client_id: int) -> dict[str, Any]:
    """What the client algorithms of ``client_id`` kept on this node (``context.state``); ``{}`` before its first fit.

    Raises:
        ValueError: The record holds more than tensors and primitives.
    """
    record = node_state.get(_KEPT)
    if record is None or str(client_id) not in record:
        return {}
    return read_payload(record[str(client_id)])


def keep_algorithm_states(node_state: Any, client_id: int, states: Mapping[str, Any]) -> None:
    """Store ``states`` as what ``client_id``'s algorithms keep, in this node's ``context.state``."""
    record = node_state.get(_KEPT)
    if record is None:
        record = node_state[_KEPT] = import_flwr().ConfigRecord()
    record[str(client_id)] = to_bytes(dict(states))


def read_payload(data: Any) -> dict[str, Any]:
    """A ``payload`` field: a dict of tensors and primitives written by ``torch.save``.

    Raises:
        ValueError: It is not one.
    """
    payload = from_bytes(data, "payload")
    if not isinstance(payload, dict):
        raise ValueError(f"`payload` must be a dict, got {type(payload).__name__}")
    return payload


def json_field(text: Any, field: str, what: str) -> Any:
    """The value of a record's JSON ``field``; a ``ValueError`` saying ``what`` it must be when it is none."""
    if not isinstance(text, str):
        raise ValueError(
            f"`{field}` must be {what} (a SuperNode unpickles nothing it is sent), got {type(text).__name__}"
        )
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"`{field}` is not JSON: {one_line(exc)}") from exc
