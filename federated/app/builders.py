"""Build what a federation config names, turning every failure into one ``ConfigError`` line.

Used by :func:`federated.app.run.prepare_run`. User code (a data function, a LightningModule, a
callback or strategy class named by import path) may raise anything while it is built; that is a
configuration problem of the entry that named it, reported with that entry's key path.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import lightning
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch.utils.data import DataLoader, Dataset

from callbacks import BridgeError, CallbackManager, ConfigError, build, registered, resolve
from callbacks.arguments import check_arguments, echo, suggest
from federated.app.config import FLOWER_NAMES, flower_hint
from federated.backends.backend import Backend
from federated.backends.client_runner import CLIENT_TRAINER_DEFAULTS, quiet_lightning
from federated.checkpoint import stateful_callbacks
from federated.data.datasets import FederatedData, as_federated_data
from federated.strategies.strategy import Strategy

__all__ = [
    "build_backend",
    "build_callbacks_at",
    "build_data",
    "build_model",
    "build_strategy",
    "check_trainer",
    "one_line",
]

RESERVED_TRAINER_KEYS = {
    "max_epochs": "clients.local_epochs",
    "min_epochs": "clients.local_epochs",
    "callbacks": "client_callbacks",
    "logger": "callbacks (e.g. tensorboard)",
    "enable_checkpointing": "callbacks (model_checkpoint)",
}
"""``trainer`` keys the federation sets itself, and the config key to use instead."""

TRAINER_KEYS_CHECKED_ALONE = ("accelerator", "devices", "num_nodes", "strategy")
"""``trainer`` keys tried one by one (each with those before it), so that a refusal names its key."""

ONE_DEVICE = (
    "a client's fit runs on one device in this process (devices: 1, [i], or \"auto\" finding one); "
    "for clients in parallel use the Ray backend (`backend.type: ray`)"
)
"""What a client's ``lightning.Trainer`` may use, said when a config asks for more."""

USER_CODE_ERRORS: tuple[type[BaseException], ...] = (Exception, SystemExit)
"""What user code may raise while it is built, as a config error of its entry (a Ctrl-C still stops)."""


DATA_KEYWORDS = {
    "num_clients": "data.num_clients",
    "partition": "data.partition.type",
    "alpha": "data.partition.alpha",
    "shards_per_client": "data.partition.shards_per_client",
    "batch_size": "data.batch_size",
    "test_fraction": "data.test_fraction",
    "seed": "seed",
}
"""The keywords a data function may take, and the config keys they come from."""


def one_line(exc: BaseException) -> str:
    """``exc``'s message on one line (a multi-line message is joined with ``" | "``)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " | ".join(lines) or type(exc).__name__


def _raised(what: str, exc: BaseException) -> str:
    return f"{what} raised {type(exc).__name__}: {one_line(exc)}"


def build_data(section: Mapping[str, Any], seed: int) -> FederatedData:
    """Call the ``data.type`` function with the ``data`` keys it names and ``data.args``."""
    name = section["type"]
    fn = resolve("data", name, "data.type")
    if not callable(fn):
        raise ConfigError(f"`{name}` is a {type(fn).__name__}, not a function returning client data", "data.type")
    partition = section["partition"]
    available = {
        "num_clients": section["num_clients"],
        "partition": partition["type"],
        "alpha": partition["alpha"],
        "shards_per_client": partition["shards_per_client"],
        "batch_size": section["batch_size"],
        "test_fraction": section["test_fraction"],
        "seed": seed,
    }
    args = dict(section["args"])
    for key in args:
        if key in DATA_KEYWORDS:
            raise ConfigError(f"`{key}` is set by `{DATA_KEYWORDS[key]}`; set it there", f"data.args.{key}")
    params = inspect.signature(fn).parameters
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if not takes_all:  # name what data.args may hold: the function's arguments beyond the data keys
        own = [n for n, p in params.items() if n not in DATA_KEYWORDS and p.kind is not p.VAR_POSITIONAL]
        for key in args:
            if key not in own:
                accepted = ", ".join(own) if own else f"none (`{name}` takes only the `data` keys)"
                raise ConfigError(f"unknown argument `{key}`{suggest(str(key), own)}; accepted: {accepted}", (
                    f"data.args.{key}"
                ))
    kwargs = {k: v for k, v in available.items() if takes_all or k in params}
    check_arguments(fn, {**kwargs, **args}, "data.args")
    try:
        data = fn(**kwargs, **args)
    except USER_CODE_ERRORS as exc:
        raise ConfigError(_raised(f"the data function `{name}`", exc), "data") from exc
    try:
        data = as_federated_data(data)
    except TypeError as exc:
        raise ConfigError(str(exc), "data.type") from exc
    _check_loaders(data, name, section["num_clients"])
    return data


def _check_loaders(data: FederatedData, name: str, num_clients: int) -> None:
    if len(data.client_loaders) != num_clients:
        raise ConfigError(
            f"the data function `{name}` gave {len(data.client_loaders)} clients, but data.num_clients is "
            f"{num_clients}; set `data.num_clients: {len(data.client_loaders)}`",
            "data.num_clients",
        )
    loaders = [(f"client {i}", d) for i, d in enumerate(data.client_loaders)]
    if data.test_loader is not None:
        loaders.append(("the test data", data.test_loader))
    for what, loader in loaders:
        dataset = loader.dataset if isinstance(loader, DataLoader) else loader
        if not isinstance(dataset, Dataset):
            raise ConfigError(
                f"the data function `{name}` gave {what} a {type(loader).__name__}; expected a torch DataLoader",
                "data.type",
            )
        try:
            size = len(dataset)  # type: ignore[arg-type]
        except TypeError:
            raise ConfigError(f"{what} of `{name}` has no length (a sized dataset is needed)", "data.type") from None
        if size < 1:
            raise ConfigError(f"{what} of `{name}` has no samples; use fewer clients or more data", "data")


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
    if data.test_loader is not None and not is_overridden("validation_step", model):
        raise ConfigError(
            f"{type(model).__name__} has no `validation_step`, which the server's evaluation of the global "
            "model runs; define it (log `accuracy` or another metric with self.log)",
            "model.type",
        )
    return model


def build_strategy(section: Mapping[str, Any]) -> Strategy:
    """Build the ``strategy`` entry and check that it is a ``federated.Strategy``.

    An argument the strategy does not take, but Flower or another strategy does, is refused with the
    key that takes it here (``fraction_fit``: ``clients.fraction``; ``eta``: ``fedadam``, ...).
    """
    target = resolve("strategy", section["type"], "strategy.type")
    if callable(target):
        check_arguments(target, section["args"], "strategy.args", elsewhere=_strategy_arguments_elsewhere())
    try:
        strategy = build("strategy", section, "strategy")
    except BridgeError:
        raise
    except USER_CODE_ERRORS as exc:
        raise ConfigError(_raised(f"`{section['type']}`", exc), "strategy.args") from exc
    if not isinstance(strategy, Strategy):
        raise ConfigError(
            f"`{section['type']}` built a {type(strategy).__name__}, not a federated.Strategy", "strategy.type"
        )
    return strategy


def build_backend(section: Mapping[str, Any]) -> Backend:
    """Build the ``backend`` entry (``sequential`` or ``ray``, or an import path) and check that it is a Backend."""
    import federated.backends  # noqa: F401 - registers the backends

    try:
        backend = build("backend", section, "backend")
    except BridgeError:
        raise
    except ImportError as exc:  # the ray extra is missing: RayBackend's one line says what to install
        raise ConfigError(one_line(exc), "backend.type") from exc
    except USER_CODE_ERRORS as exc:
        raise ConfigError(_raised(f"`{section['type']}`", exc), "backend.args") from exc
    if not isinstance(backend, Backend):
        raise ConfigError(
            f"`{section['type']}` built a {type(backend).__name__}, not a federated.Backend", "backend.type"
        )
    return backend


def build_callbacks_at(entries: Sequence[Any], path: str, on_error: str) -> list[Any]:
    """Build the callback entries at ``path`` in order, and check their hooks and state keys.

    ``path`` is ``callbacks`` (hooks bound by the round loop) or ``client_callbacks`` (bound inside
    each client's ``lightning.Trainer`` by the Lightning adapter).
    """
    built = []
    for i, entry in enumerate(entries):
        try:
            built.append(build("callback", entry, f"{path}[{i}]"))
        except BridgeError:
            raise
        except USER_CODE_ERRORS as exc:
            kind = entry.get("type") if isinstance(entry, Mapping) else entry
            raise ConfigError(_raised(f"`{kind}`", exc), f"{path}[{i}].args") from exc
    try:
        if path == "client_callbacks" and built:
            from lightning_bridge import LightningCallbackAdapter

            LightningCallbackAdapter(copy.deepcopy(built), on_error=on_error)  # type: ignore[arg-type]
        else:
            CallbackManager(built, on_error=on_error)  # type: ignore[arg-type]
            stateful_callbacks(built)
    except (BridgeError, TypeError, ValueError) as exc:
        raise ConfigError(one_line(exc), path) from exc
    return built


def _strategy_arguments_elsewhere() -> dict[str, str]:
    """Where a strategy argument belongs when the configured strategy does not take it."""
    takers: dict[str, list[str]] = {}
    for name in registered("strategy"):
        target = resolve("strategy", name)
        for arg in inspect.signature(target).parameters:
            takers.setdefault(arg, []).append(f"`{name}`")
    hints = {arg: f" (an argument of {', '.join(names)})" for arg, names in takers.items()}
    return {**hints, **{name: flower_hint(name) for name in FLOWER_NAMES}}


def check_trainer(section: Mapping[str, Any]) -> dict[str, Any]:
    """Check the ``trainer`` keys against ``lightning.Trainer``: names, types, values, and one device per fit.

    Lightning checks values (accelerator, precision, devices) as it builds a ``Trainer``; one is
    built with the keys of :data:`TRAINER_KEYS_CHECKED_ALONE` added one at a time, so a refusal
    names its key, then with all. A client's fit is one process on one device: a trainer that
    would use several devices or nodes, or launch processes (``ddp``, ``fsdp``, ...), is refused.
    """
    for key, instead in RESERVED_TRAINER_KEYS.items():
        if key in section:
            raise ConfigError(f"set by the federation; use `{instead}` instead", f"trainer.{key}")
    check_arguments(lightning.Trainer, section, "trainer")
    keys = [k for k in TRAINER_KEYS_CHECKED_ALONE if k in section]
    for i, key in enumerate(keys):
        _client_trainer({k: section[k] for k in keys[: i + 1]}, f"trainer.{key}")
    trainer = _client_trainer(section, "trainer")
    if trainer.num_nodes != 1:
        raise ConfigError(f"{trainer.num_nodes} nodes; {ONE_DEVICE}", "trainer.num_nodes")
    if trainer.num_devices != 1:
        what = f"{echo(section.get('devices'))} means {trainer.num_devices} devices"
        raise ConfigError(f"{what}; {ONE_DEVICE}", "trainer.devices")
    if not isinstance(trainer.strategy, SingleDeviceStrategy):
        what = f"{echo(section.get('strategy'))} is {type(trainer.strategy).__name__}, a multi-process strategy"
        raise ConfigError(f"{what}; {ONE_DEVICE}", "trainer.strategy")
    return dict(section)


def _client_trainer(kwargs: Mapping[str, Any], path: str) -> lightning.Trainer:
    """The ``lightning.Trainer`` of a client fit with ``kwargs``; what Lightning refuses is an error at ``path``."""
    try:
        with quiet_lightning():
            return lightning.Trainer(**{**CLIENT_TRAINER_DEFAULTS, **kwargs})
    except Exception as exc:
        raise ConfigError(f"lightning.Trainer refuses it: {type(exc).__name__}: {one_line(exc)}", path) from exc
