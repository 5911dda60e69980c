"""Build the ``FederatedTrainer`` a checked federation config names, turning every failure into one ``ConfigError``.

:func:`build_trainer` is the one entry, used by :func:`federated.app.run.prepare_run`. User code (a
data function, a LightningModule, a callback or strategy class named by import path) may raise
anything while it is built; that is a configuration problem of the entry that named it, reported
with that entry's key path. What ``FederatedTrainer`` itself refuses (its
:class:`~callbacks.ArgumentError`) is reported at the config key that set the argument.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Mapping
from typing import Any, TypeVar

import lightning

from callbacks import (
    ArgumentError,
    ConfigError,
    MetricsLogger,
    ModelCheckpoint,
    TensorBoard,
    resolve,
)
from callbacks.arguments import check_arguments, one_line, suggest
from federated.app.callback_entries import USER_CODE_ERRORS, build_callbacks_at, built_entry
from federated.app.callback_entries import raised as _raised
from federated.app.client_algorithms import build_client_algorithms
from federated.app.config import DEFAULTS
from federated.app.flower_aggregation import as_aggregation
from federated.app.strategy_entry import build_federation_strategy
from federated.app.writer_paths import PATH_ARGUMENTS, place_defaults, resolve_writer_path, within
from federated.backends.backend import Backend
from federated.data.datasets import FederatedData, as_federated_data, site_of
from federated.progress import RoundProgress
from federated.trainer import FederatedTrainer

__all__ = [
    "DATA_KEYWORDS",
    "build_callbacks_at",
    "build_data",
    "build_model",
    "build_trainer",
    "watched_metric",
]

_T = TypeVar("_T")

DATA_KEYWORDS = {
    "num_clients": "data.num_clients",
    "partition": "data.partition.type",
    "alpha": "data.partition.alpha",
    "shards_per_client": "data.partition.shards_per_client",
    "batch_size": "data.batch_size",
    "test_fraction": "data.test_fraction",
    "val_fraction": "data.val_fraction",
    "seed": "seed",
}
"""The keywords a data function may take, and the config keys they come from: with ``data.type`` and
``data.args``, what decides each client's data (a resume cannot change them)."""

NODE_CONFIG = "node_config"
"""The keyword of the node config of the machine that calls a data function (under the flower backend)."""

ARGUMENT_KEYS = {
    "model": "model.type",
    "client_data": "data",
    "test_data": "data",
    "rounds": "rounds",
    "local_epochs": "clients.local_epochs",
    "min_clients": "clients.min_clients",
    "strategy": "strategy",
    "callbacks": "callbacks",
    "client_callbacks": "client_callbacks",
    "trainer_kwargs": "trainer",
    "seed": "seed",
    "checkpoint_dir": "output_dir",
    "on_error": "on_error",
    "batch_size": "data.batch_size",
    "backend": "backend",
    "evaluate_every": "evaluate.clients.every",
    "evaluate_metrics_aggregation_fn": "evaluate.clients.aggregation",
    "keep_optimizer_state": "clients.keep_optimizer_state",
    "round_timeout": "clients.round_timeout",
    "client_algorithms": "clients.dp_sgd",
    "local_keys": "strategy.args.local_keys",
    "num_malicious_nodes": "strategy.args.num_malicious_nodes",  # too many for the clients per round
    "num_nodes_to_select": "strategy.args.num_nodes_to_select",
    "num_sampled_clients": "privacy.args.num_sampled_clients",  # unequal to the clients per round
    "clipped_count_stddev": "privacy.args.clipped_count_stddev",  # too little for the noise
}
"""The config key of each ``FederatedTrainer`` argument (``clients_per_round`` and ``evaluate_clients`` have two:
see :func:`_config_key`)."""


def build_trainer(config: Mapping[str, Any]) -> FederatedTrainer:
    """The ``FederatedTrainer`` of a checked ``config``: its data, model, strategy, backend and callbacks built.

    Raises:
        ConfigError: What the data function, the model, the strategy, the backend or the trainer
            refuses, at the key path that set it.
    """
    backend = build_backend(config["backend"])
    # a backend whose clients hold their own data: the server builds its own share alone (Flower gives a
    # ServerApp an empty node config), and the federation knows its clients by number
    data = build_data(config["data"], config["seed"], node_config={} if backend.remote_data else None)
    model = build_model(config["model"], data)
    strategy = build_federation_strategy(config)
    callbacks, client_callbacks = build_run_callbacks(config)
    clients, evaluated = config["clients"], config["evaluate"]["clients"]
    try:
        return FederatedTrainer(
            model,
            config["data"]["num_clients"] if backend.remote_data else data.client_loaders,
            data.test_loader if config["evaluate"]["server"] else None,
            rounds=config["rounds"],
            clients_per_round=_how_many(clients),
            local_epochs=clients["local_epochs"],
            strategy=strategy,
            callbacks=callbacks,
            client_callbacks=client_callbacks,
            trainer_kwargs=_trainer_section(config["trainer"]),
            min_clients=clients["min_clients"],
            seed=config["seed"],
            checkpoint_dir=os.path.join(config["output_dir"], "checkpoints"),
            on_error=config["on_error"],
            batch_size=config["data"]["batch_size"],  # for client data given as a Dataset
            backend=backend,
            evaluate_clients=_how_many(evaluated),
            evaluate_every=evaluated["every"],
            evaluate_metrics_aggregation_fn=_aggregation(evaluated["aggregation"]),
            keep_optimizer_state=clients["keep_optimizer_state"],
            round_timeout=clients["round_timeout"],
            client_algorithms=build_client_algorithms(config),
        )
    except ArgumentError as exc:
        key, inner = _config_key(exc.argument, config)
        raise ConfigError(exc.problem if inner else str(exc), key) from exc
    except ConfigError as exc:  # a check of a ``trainer_kwargs`` name or type, at ``trainer_kwargs.<name>``
        root, _, rest = exc.path.partition(".")
        raise ConfigError(exc.message, f"{ARGUMENT_KEYS.get(root, root)}{'.' if rest else ''}{rest}") from exc


def _how_many(section: Mapping[str, Any]) -> Any:
    """A ``clients`` or ``evaluate.clients`` section's count: its ``per_round`` if set, else its ``fraction``."""
    return section["per_round"] if section["per_round"] is not None else section["fraction"]


def _aggregation(path: str | None) -> Any:
    """The function ``evaluate.clients.aggregation`` names (in this project's or Flower 1.41's form), or ``None``."""
    if path is None:
        return None
    fn = resolve("aggregation", path, "evaluate.clients.aggregation")
    if not callable(fn):
        raise ConfigError(f"`{path}` is a {type(fn).__name__}, not a function", "evaluate.clients.aggregation")
    return as_aggregation(fn)


def _config_key(argument: str, config: Mapping[str, Any]) -> tuple[str, bool]:
    """The config key of a ``FederatedTrainer`` ``argument`` (``trainer_kwargs.devices``: ``trainer.devices``).

    The flag says whether the key names the argument itself; where it does not (``client_data[3]``:
    ``data``), the message keeps the argument's name.
    """
    root = re.match(r"\w+", argument)
    name = root.group(0) if root else argument
    rest = argument[len(name):]
    entry = re.fullmatch(r"(\[\d+\])(?:\.(\w+))?", rest)
    if name in ("callbacks", "client_callbacks") and entry:  # a callback (`callbacks[1]`) or its argument
        return f"{name}{entry.group(1)}" + (f".args.{entry.group(2)}" if entry.group(2) else ""), True
    if name in ("clients_per_round", "evaluate_clients"):
        section = "clients" if name == "clients_per_round" else "evaluate.clients"
        given = _at(config, section)
        return f"{section}.{'per_round' if given['per_round'] is not None else 'fraction'}", True
    key = ARGUMENT_KEYS.get(name, name)
    if rest.startswith("."):
        return f"{key}{rest}", True
    return key, not rest


def _trainer_section(section: Mapping[str, Any]) -> dict[str, Any]:
    """The ``trainer`` keys, less those the config sets elsewhere (the rest ``FederatedTrainer`` checks)."""
    for key, instead in RESERVED_TRAINER_KEYS.items():
        if key in section:
            raise ConfigError(f"set by the federation; use `{instead}` instead", f"trainer.{key}")
    return dict(section)


RESERVED_TRAINER_KEYS = {
    "callbacks": "client_callbacks",
    "logger": "callbacks (e.g. tensorboard)",
    "enable_checkpointing": "callbacks (model_checkpoint)",
}
"""``trainer`` keys that have a config key of their own, and that key."""


def build_data(section: Mapping[str, Any], seed: int, *, node_config: Mapping[str, Any] | None = None) -> FederatedData:
    """Call the ``data.type`` function with the ``data`` keys it names and ``data.args``.

    ``node_config`` (a SuperNode's, or the server's empty one, under the flower backend) goes to the
    function's ``node_config`` argument, which it must then have; the function returns that site's
    share (:func:`~federated.data.site_of`): one client's data on a SuperNode, none on the server.
    """
    name = section["type"]
    fn = resolve("data", name, "data.type")
    if not callable(fn):
        raise ConfigError(f"`{name}` is a {type(fn).__name__}, not a function returning client data", "data.type")
    available = {keyword: _at({"data": section, "seed": seed}, key) for keyword, key in DATA_KEYWORDS.items()}
    args = dict(section["args"])
    for key in args:
        if key in DATA_KEYWORDS:
            raise ConfigError(f"`{key}` is set by `{DATA_KEYWORDS[key]}`; set it there", f"data.args.{key}")
        if key == NODE_CONFIG:
            raise ConfigError("is the node config of the machine that builds the data; Flower sets it, not the "
                              "config", f"data.args.{key}")
    params = inspect.signature(fn).parameters
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if node_config is not None and NODE_CONFIG not in params:
        raise ConfigError(
            f"the data function `{name}` takes no `node_config`; under the flower backend the server and each "
            "SuperNode call it with their node config, to build their own share of the data alone: give it a "
            "`node_config` argument (docs/flower.md)",
            "data.type",
        )
    if NODE_CONFIG in params:
        available[NODE_CONFIG] = None if node_config is None else dict(node_config)
    if not takes_all:  # name what data.args may hold: the function's arguments beyond the data keys
        runtime = {*DATA_KEYWORDS, NODE_CONFIG}
        own = [n for n, p in params.items() if n not in runtime and p.kind is not p.VAR_POSITIONAL]
        for key in args:
            if key not in own:
                accepted = ", ".join(own) if own else f"none (`{name}` takes only the `data` keys)"
                raise ConfigError(f"unknown argument `{key}`{suggest(str(key), own)}; accepted: {accepted}", (
                    f"data.args.{key}"
                ))
    kwargs = {k: v for k, v in available.items() if takes_all or k in params}
    for keyword in ("val_fraction", "test_fraction"):  # a split the function cannot make is not silently dropped
        key = DATA_KEYWORDS[keyword]
        if keyword not in kwargs and available[keyword] != _at(DEFAULTS, key):
            raise ConfigError(
                f"the data function `{name}` takes no `{keyword}`, so it cannot hold out this split; "
                f"give it a `{keyword}` argument, or leave `{key}` out",
                key,
            )
    check_arguments(fn, {**kwargs, **args}, "data.args")
    try:
        data = fn(**kwargs, **args)
    except ArgumentError as exc:  # at the key that gave the argument, when one did
        key = DATA_KEYWORDS.get(exc.argument) or (f"data.args.{exc.argument}" if exc.argument in args else None)
        if key is None:
            raise ConfigError(_raised(f"the data function `{name}`", exc), "data") from exc
        raise ConfigError(exc.problem, key) from exc
    except USER_CODE_ERRORS as exc:
        raise ConfigError(_raised(f"the data function `{name}`", exc), "data") from exc
    site = site_of(node_config, section["num_clients"])
    try:
        data = as_federated_data(data, site)
    except TypeError as exc:
        raise ConfigError(str(exc), "data.type") from exc
    _check_loaders(data, name, section["num_clients"], site)
    return data


def _at(config: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted ``key`` of ``config``."""
    value: Any = config
    for part in key.split("."):
        value = value[part]
    return value


def _check_loaders(data: FederatedData, name: str, num_clients: int, site: int | str | None) -> None:
    if site is not None and len(data.client_loaders) != (0 if site == "server" else 1):
        whose = "the server (an empty node config)" if site == "server" else f"the SuperNode of partition-id={site}"
        wanted = "no client's data" if site == "server" else "that client's data alone"
        raise ConfigError(
            f"the data function `{name}` gave {len(data.client_loaders)} clients for {whose}; given a node config, "
            f"it returns {wanted} (see federated.data.site_of)",
            "data.type",
        )
    if site is None and len(data.client_loaders) != num_clients:
        raise ConfigError(
            f"the data function `{name}` gave {len(data.client_loaders)} clients, but data.num_clients is "
            f"{num_clients}; set `data.num_clients: {len(data.client_loaders)}`",
            "data.num_clients",
        )


def build_model(section: Mapping[str, Any], data: FederatedData) -> lightning.LightningModule:
    """Build the ``model.type`` LightningModule from ``model.args`` (shapes of built-in data filled in)."""
    name = section["type"]
    target = resolve("model", name, "model.type")
    if inspect.isclass(target) and not issubclass(target, lightning.LightningModule):
        raise ConfigError(
            f"`{name}` is the class {target.__qualname__}, not a lightning.LightningModule subclass", "model.type"
        )
    if not callable(target):
        raise ConfigError(f"`{name}` is a {type(target).__name__}, not a LightningModule class", "model.type")
    args = dict(section["args"])
    params = inspect.signature(target).parameters
    for key in ("in_features", "num_classes"):  # fit the built-in data's shapes unless given
        value = getattr(data, key, None)
        if key in params and key not in args and value is not None:
            args[key] = value
    check_arguments(target, args, "model.args")
    try:
        model = target(**args)
    except USER_CODE_ERRORS as exc:
        raise ConfigError(_raised(f"`{name}`", exc), "model.args") from exc
    if not isinstance(model, lightning.LightningModule):
        raise ConfigError(f"`{name}` built a {type(model).__name__}, not a lightning.LightningModule", "model.type")
    return model


def build_backend(section: Mapping[str, Any]) -> Backend:
    """Build the ``backend`` entry (``sequential``, ``ray``, ``flower`` or an import path) and check it is a Backend."""
    import federated.backends  # noqa: F401 - registers the backends

    try:
        return built_entry("backend", section, Backend, passed=(ImportError,))
    except ImportError as exc:  # the ray or flower extra is missing: the backend's one line says what to install
        raise ConfigError(one_line(exc), "backend.type") from exc


def build_run_callbacks(config: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
    """The server and client callbacks of ``config``, with the CLI's own writers and progress line.

    Relative path arguments resolve under ``output_dir``; a ``metrics.csv`` and a TensorBoard
    writer there are added unless configured; the writers under ``output_dir`` key their states by
    paths relative to it, so a moved run directory resumes.
    """
    out = config["output_dir"]
    callbacks = build_callbacks_at(_under(config["callbacks"], out, "callbacks"), "callbacks")
    place_defaults(callbacks, config["callbacks"], out, "callbacks")
    client_entries = _under(config["client_callbacks"], out, "client_callbacks")
    client_callbacks = build_callbacks_at(client_entries, "client_callbacks")
    place_defaults(client_callbacks, config["client_callbacks"], out, "client_callbacks")
    callbacks += _own_outputs(callbacks, out)
    _key_by_output_dir([*callbacks, *client_callbacks], out)
    callbacks.append(RoundProgress(config["rounds"], watched_metric(callbacks, config)[0]))
    return callbacks, client_callbacks


def _under(entries: list[Any], out: str, path: str) -> list[Any]:
    """A copy of callback entries whose path arguments resolve under ``out`` (:func:`resolve_writer_path`).

    Raises:
        ConfigError: A path that names nothing or leads outside ``out``.
    """
    resolved = []
    for i, entry in enumerate(entries):
        if isinstance(entry, Mapping) and isinstance(entry.get("args"), Mapping):
            args = dict(entry["args"])
            for key, value in args.items():
                if key in PATH_ARGUMENTS and isinstance(value, str):
                    args[key] = resolve_writer_path(value, out, f"{path}[{i}].args.{key}")
            entry = {**entry, "args": args}
        resolved.append(entry)
    return resolved


def _own_outputs(callbacks: list[Any], out: str) -> list[Any]:
    """The CLI's metrics.csv and TensorBoard writers, unless a configured callback writes there already."""
    csv_path, tb_dir = os.path.join(out, "metrics.csv"), os.path.join(out, "tensorboard")
    own: list[Any] = []
    if not any(isinstance(cb, MetricsLogger) and _same(cb.path, csv_path) for cb in callbacks):
        own.append(MetricsLogger(path=csv_path))
    if not any(isinstance(cb, TensorBoard) and _same(cb.log_dir, tb_dir) for cb in callbacks):
        own.append(TensorBoard(log_dir=tb_dir))
    return own


def _key_by_output_dir(callbacks: list[Any], out: str) -> None:
    """Key the built-in writers under ``out`` by their path relative to it (their ``state_root``).

    Their checkpointed states then do not depend on where the run directory is or how it is spelled:
    a copied or moved run directory resumes.
    """
    for callback in callbacks:
        writer = isinstance(callback, (MetricsLogger, ModelCheckpoint, TensorBoard))
        if writer and any(within(p, out) for p in _paths_of(callback)):
            callback.state_root = out


def watched_metric(callbacks: list[Any], config: Mapping[str, Any]) -> tuple[str, str]:
    """The metric (and mode) the progress line and summary report: the early stopping one, else an accuracy.

    That is the server's ``accuracy``, or ``clients/accuracy`` when only the clients evaluate.
    """
    for cb in callbacks:
        if type(cb).__name__ == "EarlyStopping":  # the native one watches its `metric`, OiaFed's its `monitor`
            return getattr(cb, "metric", None) or cb.monitor, cb.mode
    evaluated = config["evaluate"]["clients"]
    server = config["evaluate"]["server"] and config["data"]["test_fraction"] > 0
    on_clients = _how_many(evaluated) is not None
    return ("accuracy" if server or not on_clients else "clients/accuracy"), "max"


def _paths_of(callback: Any) -> list[str]:
    return [p for name in PATH_ARGUMENTS if isinstance(p := getattr(callback, name, None), str)]


def _same(a: str | None, b: str) -> bool:
    return a is not None and os.path.realpath(a) == os.path.realpath(b)


