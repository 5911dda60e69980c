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
``train``          one :class:`~federated.messages.FitTask`: ``arrays`` (ArrayRecord: its
                   weights), ``round`` (ConfigRecord shared by the round's messages: ``round``,
                   ``config`` — the resolved YAML the node builds its data, model, client
                   callbacks and strategy from —, ``setup`` and ``algorithms``), ``client``
                   (ConfigRecord: ``client-id``, ``seed``, ``lr-scale``, ``payload``,
                   ``state``); the reply holds ``arrays`` (the client's new weights, if it
                   trained) and ``outcome`` (ConfigRecord: ``kind``, ``client-id``,
                   ``num-samples``, ``metrics``, ``epoch-metrics``, ``payload``, ``error``,
                   ``traceback``, ``state``)
``evaluate``       one :class:`~federated.messages.EvaluateTask`: ``arrays``, ``round`` and
                   ``client`` as for ``train``; the reply's ``outcome`` has ``kind``
                   ``evaluation`` (with its ``payload``) or ``failure``
=================  =========================================================================

Nothing that crosses the wire is unpickled with code execution, in either direction. ``state`` is
the client's :meth:`~federated.Client.state_dict` (callback states, kept optimizer states, local
weights, client algorithms' states: tensors and primitives), and ``payload`` the task's or the
reply's payload (tensors bit for bit, ``bfloat16`` included), both written by ``torch.save`` and
read with ``torch.load(weights_only=True)`` on both sides, as checkpoints are read. ``setup``
(:meth:`~federated.backends.FitSetup.runner_settings`, what a fit needs) is JSON text whose keys and
types the node checks. ``algorithms`` is JSON too: the import names of the strategy's client
algorithms (such as FedProx's proximal term); the node builds them itself, from its own installed
code, with the strategy of the config's ``strategy`` section (:func:`check_algorithms`), and refuses
a round whose names are not what that strategy builds. A message that breaks these rules is
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
from federated.messages import ClientEvaluation, ClientFailure, ClientUpdate, EvaluateTask, FitTask

__all__ = [
    "MISSING_FLWR",
    "NOT_IN_SERVERAPP",
    "Request",
    "Site",
    "algorithm_names",
    "check_algorithms",
    "evaluate_reply",
    "fit_reply",
    "from_bytes",
    "import_flwr",
    "keep_algorithm_states",
    "node_algorithm_states",
    "query",
    "query_reply",
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


def algorithm_names(algorithms: Sequence[Any]) -> list[str]:
    """The import names (``module:qualname``) of the classes of ``algorithms``, in order."""
    return [f"{type(a).__module__}:{type(a).__qualname__}" for a in algorithms]


def check_algorithms(names: Sequence[str], built: Sequence[Any]) -> None:
    """Refuse a request whose ``names`` are not exactly the classes of ``built`` (the node's own client algorithms).

    Raises:
        ValueError: ``names`` (a :class:`Request`'s) name other client algorithms than the node built.
    """
    if list(names) != algorithm_names(built):
        raise ValueError(
            f"the server's strategy runs the client algorithms {list(names)!r}, but the config's `strategy` builds "
            f"{algorithm_names(built)!r} on this SuperNode: a Flower federation's strategy must be its config's"
        )


def _names(text: Any) -> list[str]:
    """The class names of a round record's ``algorithms`` (JSON text)."""
    names = _json_field(text, "algorithms", "JSON text naming client-algorithm classes")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValueError(f"`algorithms` must be a JSON list of client-algorithm class names, got {one_line(text)}")
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


def round_record(*, round_num: int, config: str, setup: str, algorithms: Sequence[Any] = ()) -> Any:
    """The ConfigRecord every message of a round shares (``setup``: :func:`setup_text`; ``algorithms`` by name)."""
    return import_flwr().ConfigRecord(
        {
            "round": int(round_num),
            "config": config,
            "setup": setup,
            "algorithms": json.dumps(algorithm_names(algorithms)),
        }
    )


def request(weights: Any, shared: Any, task: FitTask | EvaluateTask, state: Mapping[str, Any]) -> Any:
    """The content of ``task``'s ``train`` or ``evaluate`` message (``weights``: the ArrayRecord of its weights)."""
    flwr = import_flwr()
    client = flwr.ConfigRecord(
        {
            "client-id": int(task.client_id),
            "seed": int(task.seed),
            "lr-scale": float(getattr(task, "lr_scale", 1.0)),
            "payload": to_bytes(dict(task.payload)),
            "state": to_bytes(dict(state)),
        }
    )
    return flwr.RecordDict({"arrays": weights, "round": shared, "client": client})


@dataclass
class Request:
    """A ``train`` or ``evaluate`` message as the node reads it (``algorithms``: names for :func:`check_algorithms`)."""

    weights: dict[str, torch.Tensor]
    round_num: int
    lr_scale: float
    payload: dict[str, Any]
    config: str
    setup: dict[str, Any]
    algorithms: list[str]
    client_id: int
    seed: int
    state: dict[str, Any]

    def fit_task(self) -> FitTask:
        """The :class:`~federated.messages.FitTask` of a ``train`` message."""
        return FitTask(self.client_id, self.round_num, self.seed, self.weights, self.lr_scale, self.payload)

    def evaluate_task(self) -> EvaluateTask:
        """The :class:`~federated.messages.EvaluateTask` of an ``evaluate`` message."""
        return EvaluateTask(self.client_id, self.round_num, self.seed, self.weights, self.payload)


def read_request(content: Any) -> Request:
    """The :class:`Request` in a message's content (on the node: nothing but data is loaded).

    Raises:
        ValueError: A field is not what :func:`request` writes (a pickle where JSON belongs, say).
    """
    shared, client = content["round"], content["client"]
    return Request(
        weights=read_weights(content["arrays"]),
        round_num=int(shared["round"]),
        lr_scale=float(client["lr-scale"]),
        payload=_payload(client["payload"]),
        config=str(shared["config"]),
        setup=read_setup(shared["setup"]),
        algorithms=_names(shared["algorithms"]),
        client_id=int(client["client-id"]),
        seed=int(client["seed"]),
        state=from_bytes(client["state"]),
    )


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
    return _payload(record[str(client_id)])


def keep_algorithm_states(node_state: Any, client_id: int, states: Mapping[str, Any]) -> None:
    """Store ``states`` as what ``client_id``'s algorithms keep, in this node's ``context.state``."""
    record = node_state.get(_KEPT)
    if record is None:
        record = node_state[_KEPT] = import_flwr().ConfigRecord()
    record[str(client_id)] = to_bytes(dict(states))


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
        payload=_payload(fields["payload"]),
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
    return ClientEvaluation(int(fields["client-id"]), int(fields["num-samples"]), metrics, _payload(fields["payload"]))


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
        int(node["partition-id"]),
        int(node["num-partitions"]),
        int(node["num-samples"]),
        int(node["num-val-samples"]),
        str(node["error"]),
    )


def _outcome_fields(outcome: ClientUpdate | ClientEvaluation | ClientFailure) -> dict[str, Any]:
    if isinstance(outcome, ClientFailure):
        return {
            "kind": "failure",
            "client-id": outcome.client_id,
            "error": outcome.error,
            "traceback": outcome.traceback,
        }
    fields: dict[str, Any] = {
        "kind": "update" if isinstance(outcome, ClientUpdate) else "evaluation",
        "client-id": outcome.client_id,
        "num-samples": outcome.num_samples,
        "metrics": json.dumps(outcome.metrics),
        "payload": to_bytes(dict(outcome.payload)),
    }
    if isinstance(outcome, ClientUpdate):
        fields["epoch-metrics"] = json.dumps(outcome.epoch_metrics)
    return fields


def _failure(fields: Any) -> ClientFailure:
    return ClientFailure(
        client_id=int(fields["client-id"]), error=str(fields["error"]), traceback=str(fields["traceback"])
    )


def _payload(data: Any) -> dict[str, Any]:
    """A ``payload`` field: a dict of tensors and primitives written by ``torch.save``.

    Raises:
        ValueError: It is not one.
    """
    payload = from_bytes(data, "payload")
    if not isinstance(payload, dict):
        raise ValueError(f"`payload` must be a dict, got {type(payload).__name__}")
    return payload


def _floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {str(name): float(value) for name, value in metrics.items()}


def _json_field(text: Any, field: str, what: str) -> Any:
    """The value of a record's JSON ``field``; a ``ValueError`` saying ``what`` it must be when it is none."""
    if not isinstance(text, str):
        raise ValueError(
            f"`{field}` must be {what} (a SuperNode unpickles nothing it is sent), got {type(text).__name__}"
        )
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"`{field}` is not JSON: {one_line(exc)}") from exc
