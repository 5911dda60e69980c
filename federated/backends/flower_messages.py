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

How weights, states, payloads and JSON fields are written into these records is
:mod:`federated.backends.flower_records`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from callbacks.arguments import one_line
from federated.backends.flower_records import (
    from_bytes,
    import_flwr,
    json_field,
    read_payload,
    read_weights,
    to_bytes,
    weights_record,
)
from federated.messages import ClientEvaluation, ClientFailure, ClientUpdate, EvaluateTask, FitTask

__all__ = [
    "NOT_IN_SERVERAPP",
    "Request",
    "Site",
    "algorithm_names",
    "check_algorithms",
    "evaluate_reply",
    "fit_reply",
    "query",
    "query_reply",
    "read_evaluate_reply",
    "read_fit_reply",
    "read_query",
    "read_query_reply",
    "read_request",
    "read_setup",
    "request",
    "round_record",
    "setup_text",
]

NOT_IN_SERVERAPP = (
    "backend 'flower' trains on Flower SuperNodes and runs inside a Flower ServerApp: start the federation "
    "with `flwr run <app dir> <superlink connection>` (docs/flower.md), not with `python -m lightning_bridge.fed`"
)

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
    settings = json_field(text, "setup", "JSON text")
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
    names = json_field(text, "algorithms", "JSON text naming client-algorithm classes")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValueError(f"`algorithms` must be a JSON list of client-algorithm class names, got {one_line(text)}")
    return names


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
        payload=read_payload(client["payload"]),
        config=str(shared["config"]),
        setup=read_setup(shared["setup"]),
        algorithms=_names(shared["algorithms"]),
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
        payload=read_payload(fields["payload"]),
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
    payload = read_payload(fields["payload"])
    return ClientEvaluation(int(fields["client-id"]), int(fields["num-samples"]), metrics, payload)


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


def _floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {str(name): float(value) for name, value in metrics.items()}
