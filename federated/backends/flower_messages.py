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

Nothing that crosses the wire is unpickled with code execution, in either direction. ``state`` is
the client's :meth:`~federated.Client.state_dict` (callback states, kept optimizer states, local
weights: tensors and primitives) written by ``torch.save`` and read with
``torch.load(weights_only=True)`` on both sides, as checkpoints are read. ``setup``
(:meth:`~federated.backends.FitSetup.runner_settings`, what a fit needs) is JSON text whose keys and
types the node checks. ``callbacks`` is JSON too: the import names of the strategy's Lightning
callbacks for the round (such as FedProx's proximal term); the node builds them itself, from its own
installed code, with the strategy of the config's ``strategy`` section (:func:`read_callbacks`), and
refuses a round whose names are not what that strategy builds. A message that breaks these rules is
answered with an error that names the field, and nothing in it runs. Metrics travel as JSON text.

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

from callbacks.arguments import one_line
from federated.results import ClientEvaluation, ClientFailure, ClientUpdate

__all__ = [
    "MISSING_FLWR",
    "NOT_IN_SERVERAPP",
    "Request",
    "Site",
    "callback_names",
    "evaluate_reply",
    "fit_reply",
    "from_bytes",
    "import_flwr",
    "query",
    "query_reply",
    "read_callbacks",
    "read_evaluate_reply",
    "read_fit_reply",
    "read_query",
    "read_query_reply",
    "read_request",
    "read_setup",
    "read_weights",
    "request",
    "round_record",
    "setup_text",
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


_SETUP_TYPES: dict[str, type] = {
    "local_epochs": int,
    "trainer_kwargs": dict,
    "reuse_trainer": bool,
    "keep_optimizer_state": bool,
    "local_keys": list,
}


def setup_text(settings: Mapping[str, Any]) -> str:
    """``settings`` (:meth:`~federated.backends.FitSetup.runner_settings`) as the JSON text a message carries.

    Raises:
        ValueError: A setting is not JSON data (a ``trainer_kwargs`` value that is an object, say).
    """
    try:
        return json.dumps(dict(settings), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"FlowerBackend: the client fits' settings must be JSON data to travel to the SuperNodes ({exc}); "
            "pass trainer settings as numbers, strings, booleans, lists and mappings"
        ) from exc


def read_setup(text: Any) -> dict[str, Any]:
    """The inverse of :func:`setup_text`: the keyword arguments of a :class:`~federated.ClientRunner`.

    Raises:
        ValueError: ``text`` is not that JSON text (another type, other keys, a value of another type).
    """
    settings = _json_field(text, "setup", "JSON text")
    if not isinstance(settings, dict) or set(settings) != set(_SETUP_TYPES):
        found = sorted(settings) if isinstance(settings, dict) else type(settings).__name__
        raise ValueError(f"`setup` must have the keys {sorted(_SETUP_TYPES)}, got {found}")
    for key, kind in _SETUP_TYPES.items():
        if not isinstance(settings[key], kind) or (kind is int and isinstance(settings[key], bool)):
            raise ValueError(f"`setup.{key}` must be {kind.__name__}, got {type(settings[key]).__name__}")
    if not all(isinstance(key, str) for key in settings["local_keys"]):
        raise ValueError("`setup.local_keys` must be a list of strings")
    settings["local_keys"] = tuple(settings["local_keys"])
    return settings


def callback_names(callbacks: Sequence[Any]) -> list[str]:
    """The import names (``module:qualname``) of the classes of ``callbacks``, in order."""
    return [f"{type(cb).__module__}:{type(cb).__qualname__}" for cb in callbacks]


def read_callbacks(names: Sequence[str], built: Sequence[Any]) -> list[Any]:
    """``built`` (the node's own strategy callbacks for the round), when ``names`` are exactly their classes'.

    Raises:
        ValueError: ``names`` (a :class:`Request`'s) name other callbacks than the node built.
    """
    if list(names) != callback_names(built):
        raise ValueError(
            f"the server's strategy adds the client callbacks {list(names)!r}, but the config's `strategy` builds "
            f"{callback_names(built)!r} on this SuperNode: a Flower federation's strategy must be its config's"
        )
    return list(built)


def _names(text: Any) -> list[str]:
    """The callback names of a round record's ``callbacks`` (JSON text)."""
    names = _json_field(text, "callbacks", "JSON text naming callback classes")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValueError(f"`callbacks` must be a JSON list of callback class names, got {one_line(text)}")
    return names


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
    *, round_num: int, config: str, setup: str, lr_scale: float = 1.0, callbacks: Sequence[Any] = ()
) -> Any:
    """The ConfigRecord every message of a round shares (``setup``: :func:`setup_text`; ``callbacks`` by name)."""
    return import_flwr().ConfigRecord(
        {
            "round": int(round_num),
            "lr-scale": float(lr_scale),
            "config": config,
            "setup": setup,
            "callbacks": json.dumps(callback_names(callbacks)),
        }
    )


def request(weights: Any, shared: Any, *, client_id: int, seed: int, state: Mapping[str, Any]) -> Any:
    """The content of one client's ``train`` or ``evaluate`` message (``weights``: an ArrayRecord of the round)."""
    flwr = import_flwr()
    client = flwr.ConfigRecord({"client-id": int(client_id), "seed": int(seed), "state": to_bytes(dict(state))})
    return flwr.RecordDict({"arrays": weights, "round": shared, "client": client})


@dataclass
class Request:
    """A ``train`` or ``evaluate`` message as the node reads it (``callbacks``: names, for :func:`read_callbacks`)."""

    weights: dict[str, torch.Tensor]
    round_num: int
    lr_scale: float
    config: str
    setup: dict[str, Any]
    callbacks: list[str]
    client_id: int
    seed: int
    state: dict[str, Any]


def read_request(content: Any) -> Request:
    """The :class:`Request` in a message's content (on the node: nothing but data is loaded).

    Raises:
        ValueError: A field is not what :func:`request` writes (a pickle where JSON belongs, say).
    """
    shared, client = content["round"], content["client"]
    return Request(
        weights=read_weights(content["arrays"]),
        round_num=int(shared["round"]),
        lr_scale=float(shared["lr-scale"]),
        config=str(shared["config"]),
        setup=read_setup(shared["setup"]),
        callbacks=_names(shared["callbacks"]),
        client_id=int(client["client-id"]),
        seed=int(client["seed"]),
        state=from_bytes(client["state"]),
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
    state = from_bytes(fields["state"])
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
    """The config and the setup a ``query`` message carries (on the node: nothing but data is loaded).

    Raises:
        ValueError: ``setup`` is not what :func:`setup_text` writes.
    """
    shared = content["round"]
    return str(shared["config"]), read_setup(shared["setup"])


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


def _json_field(text: Any, field: str, what: str) -> Any:
    """The value of a record's JSON ``field``; a ``ValueError`` saying ``what`` it must be when it is none."""
    if not isinstance(text, str):
        raise ValueError(f"`{field}` must be {what} (a SuperNode unpickles nothing it is sent), got "
                         f"{type(text).__name__}")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"`{field}` is not JSON: {one_line(exc)}") from exc
