"""The messages between :class:`~federated.backends.FlowerBackend` and the package's Flower ClientApp.

Every message is a Flower ``Message`` whose content is a ``RecordDict`` of these records:

=================  =========================================================================
message            records
=================  =========================================================================
``query``          ``round`` (as for ``train``, with round ``0``): the node builds its client
                   from it; the reply's ``node`` ConfigRecord holds the SuperNode's
                   ``partition-id`` and ``num-partitions`` (its ``--node-config``), its
                   client's ``num-samples`` and ``num-val-samples``, and ``error`` (why the
                   client could not be built, or ``""``)
``train``          ``arrays`` (ArrayRecord: the global weights), ``round`` (ConfigRecord shared
                   by the round's messages: ``round``, ``lr-scale``, ``config`` — the resolved
                   YAML the node builds its data, model and client callbacks from —, ``setup``
                   and ``callbacks``), ``client`` (ConfigRecord: ``client-id``, ``seed``,
                   ``state``); the reply holds ``arrays`` (the client's new weights, if it
                   trained) and ``outcome`` (ConfigRecord: ``kind``, ``client-id``,
                   ``num-samples``, ``metrics``, ``epoch-metrics``, ``error``, ``traceback``,
                   ``state``)
``evaluate``       ``arrays``, ``round`` and ``client`` as for ``train``; the reply's ``outcome``
                   has ``kind`` ``evaluation`` or ``failure``
=================  =========================================================================

``state`` is the client's :meth:`~federated.Client.state_dict` (callback states, kept optimizer
states, local weights) written by ``torch.save``; the server reads what a node sends with
``torch.load(weights_only=True)``, as it reads its own checkpoints: a node cannot make the server
run code. ``setup`` (:meth:`~federated.backends.FitSetup.runner_settings`, what a fit needs) and
``callbacks`` (the strategy's Lightning callbacks, such as FedProx's proximal term) go the other
way, from the server the node runs the code of. Metrics travel as JSON text.

Weights travel as NumPy arrays, bit for bit; ``bfloat16`` tensors, which NumPy cannot hold, as
their raw bytes under the dtype name ``bfloat16``.

Nothing here imports ``flwr`` at import time: the ``flower`` extra is optional, and
:func:`import_flwr` turns its absence into one line that says what to install.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from federated.results import ClientEvaluation, ClientFailure, ClientUpdate

__all__ = [
    "MISSING_FLWR",
    "NOT_IN_SERVERAPP",
    "Request",
    "Site",
    "evaluate_reply",
    "fit_reply",
    "from_bytes",
    "import_flwr",
    "query",
    "query_reply",
    "read_evaluate_reply",
    "read_fit_reply",
    "read_query",
    "read_query_reply",
    "read_request",
    "read_weights",
    "request",
    "round_record",
    "to_bytes",
    "weights_record",
]

MISSING_FLWR = "backend 'flower' needs the flower extra: pip install 'lightning-bridge[flower]'"

NOT_IN_SERVERAPP = (
    "backend 'flower' trains on Flower SuperNodes and runs inside a Flower ServerApp: start the federation "
    "with `flwr run <app dir> <superlink connection>` (docs/flower.md), not with `python -m lightning_bridge.fed`"
)


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


def from_bytes(data: bytes, *, trusted: bool) -> Any:
    """The inverse of :func:`to_bytes`; only ``trusted`` bytes (from the server) may hold objects beyond tensors."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=not trusted)


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


def round_record(
    *, round_num: int, config: str, setup: bytes, lr_scale: float = 1.0, callbacks: Sequence[Any] = ()
) -> Any:
    """The ConfigRecord every message of a round shares (``callbacks`` pickled here, once per round)."""
    return import_flwr().ConfigRecord(
        {
            "round": int(round_num),
            "lr-scale": float(lr_scale),
            "config": config,
            "setup": setup,
            "callbacks": to_bytes(list(callbacks)),
        }
    )


def request(weights: Any, shared: Any, *, client_id: int, seed: int, state: Mapping[str, Any]) -> Any:
    """The content of one client's ``train`` or ``evaluate`` message (``weights``: an ArrayRecord of the round)."""
    flwr = import_flwr()
    client = flwr.ConfigRecord({"client-id": int(client_id), "seed": int(seed), "state": to_bytes(dict(state))})
    return flwr.RecordDict({"arrays": weights, "round": shared, "client": client})


@dataclass
class Request:
    """A ``train`` or ``evaluate`` message as the node reads it."""

    weights: dict[str, torch.Tensor]
    round_num: int
    lr_scale: float
    config: str
    setup: dict[str, Any]
    callbacks: list[Any]
    client_id: int
    seed: int
    state: dict[str, Any]


def read_request(content: Any) -> Request:
    """The :class:`Request` in a message's content (on the node, which trusts the server's pickles)."""
    shared, client = content["round"], content["client"]
    return Request(
        weights=read_weights(content["arrays"]),
        round_num=int(shared["round"]),
        lr_scale=float(shared["lr-scale"]),
        config=str(shared["config"]),
        setup=from_bytes(shared["setup"], trusted=True),
        callbacks=from_bytes(shared["callbacks"], trusted=True),
        client_id=int(client["client-id"]),
        seed=int(client["seed"]),
        state=from_bytes(client["state"], trusted=True),
    )


def fit_reply(outcome: ClientUpdate | ClientFailure, state: Mapping[str, Any]) -> Any:
    """The content of a ``train`` reply: the outcome, its weights apart, and the client's new state."""
    flwr = import_flwr()
    fields = _outcome_fields(outcome)
    fields["state"] = to_bytes(dict(state))
    records = {"outcome": flwr.ConfigRecord(fields)}
    if isinstance(outcome, ClientUpdate) and outcome.weights is not None:
        records["arrays"] = weights_record(outcome.weights)
    return flwr.RecordDict(records)


def read_fit_reply(content: Any) -> tuple[ClientUpdate | ClientFailure, dict[str, Any]]:
    """The outcome and the client's new state in a ``train`` reply (on the server: nothing but data is loaded)."""
    fields = content["outcome"]
    state = from_bytes(fields["state"], trusted=False)
    if fields["kind"] == "failure":
        return _failure(fields), state
    update = ClientUpdate(
        client_id=int(fields["client-id"]),
        num_samples=int(fields["num-samples"]),
        weights=read_weights(content["arrays"]),
        metrics=_floats(json.loads(fields["metrics"])),
        epoch_metrics=[_floats(m) for m in json.loads(fields["epoch-metrics"])],
    )
    return update, state


def evaluate_reply(outcome: ClientEvaluation | ClientFailure) -> Any:
    """The content of an ``evaluate`` reply."""
    flwr = import_flwr()
    return flwr.RecordDict({"outcome": flwr.ConfigRecord(_outcome_fields(outcome))})


def read_evaluate_reply(content: Any) -> ClientEvaluation | ClientFailure:
    """The outcome in an ``evaluate`` reply."""
    fields = content["outcome"]
    if fields["kind"] == "failure":
        return _failure(fields)
    metrics = _floats(json.loads(fields["metrics"]))
    return ClientEvaluation(int(fields["client-id"]), int(fields["num-samples"]), metrics)


def query(shared: Any) -> Any:
    """The content of a ``query`` message: the ``round`` record of :func:`round_record` (round ``0``)."""
    return import_flwr().RecordDict({"round": shared})


def read_query(content: Any) -> tuple[str, dict[str, Any]]:
    """The config and the setup a ``query`` message carries (on the node)."""
    shared = content["round"]
    return str(shared["config"]), from_bytes(shared["setup"], trusted=True)


@dataclass
class Site:
    """A SuperNode as its ``query`` reply describes it."""

    partition_id: int
    num_partitions: int
    num_samples: int = 0
    num_val_samples: int = 0
    error: str = ""


def query_reply(site: Site) -> Any:
    """The content of a ``query`` reply: who the node is, and how much data its client holds."""
    flwr = import_flwr()
    node = flwr.ConfigRecord(
        {
            "partition-id": site.partition_id,
            "num-partitions": site.num_partitions,
            "num-samples": site.num_samples,
            "num-val-samples": site.num_val_samples,
            "error": site.error,
        }
    )
    return flwr.RecordDict({"node": node})


def read_query_reply(content: Any) -> Site:
    """The :class:`Site` of a ``query`` reply."""
    node = content["node"]
    return Site(
        int(node["partition-id"]), int(node["num-partitions"]), int(node["num-samples"]),
        int(node["num-val-samples"]), str(node["error"]),
    )


def _outcome_fields(outcome: ClientUpdate | ClientEvaluation | ClientFailure) -> dict[str, Any]:
    if isinstance(outcome, ClientFailure):
        return {
            "kind": "failure", "client-id": outcome.client_id, "error": outcome.error, "traceback": outcome.traceback
        }
    fields: dict[str, Any] = {
        "kind": "update" if isinstance(outcome, ClientUpdate) else "evaluation",
        "client-id": outcome.client_id,
        "num-samples": outcome.num_samples,
        "metrics": json.dumps(outcome.metrics),
    }
    if isinstance(outcome, ClientUpdate):
        fields["epoch-metrics"] = json.dumps(outcome.epoch_metrics)
    return fields


def _failure(fields: Any) -> ClientFailure:
    return ClientFailure(
        client_id=int(fields["client-id"]), error=str(fields["error"]), traceback=str(fields["traceback"])
    )


def _floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {str(name): float(value) for name, value in metrics.items()}
