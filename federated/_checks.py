"""Argument checks of ``FederatedTrainer``: one readable line per mistake, naming the parameter.

Every value error is an :class:`~callbacks.ArgumentError` naming the parameter, so that the YAML
application reports it at the config key that set it.
"""

from __future__ import annotations

import copy
import fnmatch
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch.utils.data import DataLoader, Dataset

from callbacks import ArgumentError, BridgeError, CallbackManager, OnError, build_callbacks, resolve
from callbacks.arguments import one_line
from callbacks.callback import stateful_callbacks
from callbacks.oiafed import adapt
from callbacks.privacy_budget import PrivacyBudget
from federated.backends.backend import Backend
from federated.client.client import Client, client_logger, split_callbacks
from federated.privacy.dp_wrapper import privacy_account
from federated.rules import COUNT, FRACTION, POSITIVE
from federated.strategies.strategy import Strategy


def check_model(model: Any, needs_validation: bool) -> LightningModule:
    if not isinstance(model, LightningModule):
        raise TypeError(f"`model` must be a lightning.LightningModule, got {type(model).__name__}")
    if needs_validation and not is_overridden("validation_step", model):
        raise ArgumentError(
            "model",
            f"{type(model).__name__} has no `validation_step`, which evaluating on the server's test data or on "
            "the clients' validation data runs; define it (log `accuracy` or another metric with self.log)",
        )
    return model


def as_loader(data: Any, name: str, batch_size: int, shuffle: bool) -> DataLoader:
    if isinstance(data, DataLoader):
        loader = data
    elif isinstance(data, Dataset):
        loader = DataLoader(data, batch_size=batch_size, shuffle=shuffle)
    else:
        raise TypeError(f"`{name}` must be a torch DataLoader or Dataset, got {type(data).__name__}")
    try:
        size = len(loader.dataset)  # type: ignore[arg-type]
    except TypeError:
        raise ArgumentError(name, "must have a sized dataset (its length is the client's FedAvg weight)") from None
    if size < 1:
        raise ArgumentError(name, "is empty; every client needs at least one sample (use fewer clients or more data)")
    return loader


Loaders = tuple[DataLoader | None, DataLoader | None]
"""A client's ``(train, val)`` loaders; ``(None, None)`` for a client whose data is on its own machine."""


def client_loaders(client_data: Any, batch_size: int, *, remote: bool = False) -> list[Loaders]:
    """One ``(train, val or None)`` pair of loaders per entry of ``client_data``.

    With ``remote`` (a backend whose clients hold their own data), ``client_data`` is the number of
    clients, and each gets ``(None, None)``.
    """
    count = isinstance(client_data, int) and not isinstance(client_data, bool)
    if remote:
        if not count:
            raise ArgumentError(
                "client_data",
                f"must be the number of clients (an int), got {type(client_data).__name__}: this backend's clients "
                "build their data on their own machines, and the server holds none",
            )
        return [(None, None)] * int(COUNT.check("client_data", client_data))
    if count:
        raise ArgumentError(
            "client_data",
            f"{client_data} is a number of clients, which only a backend whose clients hold their own data "
            f"takes (backend 'flower'); give this one an entry per client: {CLIENT_DATA_FORMS}",
        )
    if isinstance(client_data, (DataLoader, Dataset)) or not isinstance(client_data, Sequence) or not client_data:
        raise ArgumentError(
            "client_data",
            f"must be a non-empty list with one entry per client ({CLIENT_DATA_FORMS}), got "
            f"{type(client_data).__name__}",
        )
    return [_client_pair(d, f"client_data[{i}]", batch_size) for i, d in enumerate(client_data)]


CLIENT_DATA_FORMS = (
    "a DataLoader, a Dataset, a (train, val) pair of them, or a LightningDataModule (lightning.pytorch's or "
    "pytorch_lightning's, such as Opacus's DPLightningDataModule)"
)
"""Every form one client's entry of ``client_data`` may take, as messages name them."""


def _client_pair(data: Any, name: str, batch_size: int) -> tuple[DataLoader, DataLoader | None]:
    if _is_datamodule(data):
        data.prepare_data()
        data.setup("fit")
        val = data.val_dataloader() if _defines_val_dataloader(data) else None
        return (
            as_loader(data.train_dataloader(), f"{name}.train_dataloader()", batch_size, shuffle=True),
            None if val is None else as_loader(val, f"{name}.val_dataloader()", batch_size, shuffle=False),
        )
    if isinstance(data, tuple):
        if len(data) != 2:
            raise ArgumentError(name, f"must be {CLIENT_DATA_FORMS}, got a tuple of {len(data)}")
        train, val = data
        return (
            as_loader(train, f"{name}[0]", batch_size, shuffle=True),
            None if val is None else as_loader(val, f"{name}[1]", batch_size, shuffle=False),
        )
    if not isinstance(data, (DataLoader, Dataset)):
        raise TypeError(f"`{name}` must be {CLIENT_DATA_FORMS}, got {type(data).__name__}")
    return as_loader(data, name, batch_size, shuffle=True), None


def _is_datamodule(data: Any) -> bool:
    """Whether ``data`` is a ``LightningDataModule`` of ``lightning.pytorch`` or of ``pytorch_lightning``.

    ``pytorch_lightning`` is looked up only if loaded already: its data modules exist only then.
    """
    standalone = sys.modules.get("pytorch_lightning")
    return isinstance(data, LightningDataModule) or (
        standalone is not None and isinstance(data, standalone.LightningDataModule)
    )


def _defines_val_dataloader(data: Any) -> bool:
    """Whether ``data`` defines its own ``val_dataloader``; for a wrapper (DPLightningDataModule), the one it wraps."""
    inner = getattr(data, "datamodule", None)
    if _is_datamodule(inner):
        data = inner
    standalone = LightningDataModule if isinstance(data, LightningDataModule) else None
    parent = standalone or sys.modules["pytorch_lightning"].LightningDataModule
    return is_overridden("val_dataloader", data, parent)


def positive_int(value: Any, name: str) -> int:
    return int(COUNT.check(name, value))


def clients_per_round(value: Any, num_clients: int) -> int:
    if isinstance(value, float):
        fraction = FRACTION.check("clients_per_round", value)
        return max(1, round(fraction * num_clients))
    counts = COUNT.up_to(num_clients)
    if isinstance(value, bool) or not isinstance(value, int) or not counts.contains(value):
        raise ArgumentError(
            "clients_per_round",
            f"must be an int in {counts.span()} (there are {num_clients} clients) or a fraction in "
            f"{FRACTION.span()}, got {value!r}",
        )
    return value


def min_clients(value: Any, per_round: int) -> int:
    positive_int(value, "min_clients")
    if value > per_round:
        raise ArgumentError(
            "min_clients",
            f"must be an int in {COUNT.up_to(per_round).span()}: {value} is more than the {per_round} clients "
            "sampled per round",
        )
    return int(value)


def strategy(value: Any, num_clients: int, clients_per_round: int) -> Strategy:
    """The strategy ``value`` names, told the federation's size (it refuses too small a round: Krum's n >= 2f + 3)."""
    built: Strategy = _named("strategy", value, Strategy, "a registered name such as 'fedavg' or a federated.Strategy")
    built.begin_federation(num_clients, clients_per_round)
    return built


def backend(value: Any) -> Backend:
    import federated.backends  # noqa: F401 - registers the backends

    accepted = "'sequential', 'ray' or a federated.Backend (e.g. RayBackend(num_workers=4))"
    return _named("backend", value, Backend, accepted)


def _named(kind: str, value: Any, base: type[Any], accepted: str) -> Any:
    """``value`` itself if it is a ``base``, else the ``kind`` registered under the name ``value``, built."""
    if isinstance(value, base):
        return value
    if not isinstance(value, str):
        raise TypeError(f"`{kind}` must be {accepted}, got {type(value).__name__}")
    built = resolve(kind, value, path=kind)()
    if not isinstance(built, base):
        raise TypeError(f"`{kind}` {value!r} built a {type(built).__name__}, not a federated.{base.__name__}")
    return built


def native_callbacks(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise TypeError(f"`{name}` must be a list of native callbacks (or of {{type, args}} entries)")
    items = list(value)
    if any(isinstance(item, (Mapping, str)) for item in items):
        items = build_callbacks(items, path=name)
    try:  # OiaFed callbacks wrapped once, here: the wrapper carries them to other processes
        return [adapt(item) for item in items]
    except TypeError as exc:
        raise ArgumentError(name, one_line(exc)) from exc


def on_error(value: Any) -> OnError:
    if value not in ("warn", "raise"):
        raise ArgumentError("on_error", f"can be 'warn' or 'raise', got {value!r}")
    return value


def server_callbacks(callbacks: list[Any], policy: OnError) -> CallbackManager:
    """The dispatcher of the server callbacks: their hooks bind and their state keys are distinct.

    Raises:
        ArgumentError: A callback whose hooks do not bind, or a Lightning callback (a client fit's).
    """
    lightning = split_callbacks(callbacks)[1]
    if lightning:
        index = next(i for i, callback in enumerate(callbacks) if callback is lightning[0])
        raise ArgumentError(
            f"callbacks[{index}]",
            f"{type(lightning[0]).__name__} is a Lightning callback, which runs inside a Lightning fit, and the server "
            "runs none; put it in `client_callbacks` to run it in every client's fit",
        )
    try:
        manager = CallbackManager(callbacks, on_error=policy)
        stateful_callbacks(manager.callbacks)  # refuse shared state keys now, not at the first save
    except (BridgeError, TypeError, ValueError) as exc:
        raise ArgumentError("callbacks", one_line(exc)) from exc
    return manager


def client_callbacks(value: Any, policy: OnError) -> list[Any]:
    """The ``client_callbacks`` (built from ``{type, args}`` entries if need be), once a copy of them can join a fit.

    Its native callbacks are bridged into Lightning (hooks bound, state keys distinct); its
    Lightning callbacks have distinct ``state_key`` values (their states are kept by key) and copy.
    """
    template = native_callbacks(value, "client_callbacks")
    native, lightning = split_callbacks(template)
    if native:
        from lightning_bridge.adapter import LightningCallbackAdapter

        try:
            LightningCallbackAdapter(copy.deepcopy(native), on_error=policy)
        except (BridgeError, TypeError, ValueError) as exc:
            raise ArgumentError("client_callbacks", one_line(exc)) from exc
    keys: dict[str, int] = {}
    for i, callback in enumerate(template):
        if callback not in lightning:
            continue
        key = callback.state_key
        if key in keys:
            problem = (
                f"[{keys[key]}] and [{i}] are Lightning callbacks with the same state_key {key!r}, so their states "
                "would mix; give them different arguments (e.g. another `monitor`)"
            )
            raise ArgumentError("client_callbacks", problem)
        keys[key] = i
        try:
            copy.deepcopy(callback)
        except Exception as exc:
            problem = f"[{i}] {type(callback).__name__} cannot be copied for each client: {one_line(exc)}"
            raise ArgumentError("client_callbacks", problem) from exc
    return template


def clients(loaders: Sequence[Loaders], template: list[Any], loggers: Any, policy: OnError) -> list[Client]:
    """One :class:`~federated.Client` per ``(train, val)`` pair, with its copies of ``template`` and ``loggers``."""
    if loggers is None:
        loggers = []
    if isinstance(loggers, (str, bytes, Mapping)) or not isinstance(loggers, Sequence):
        loggers = [loggers]
    from lightning.pytorch.loggers import Logger

    for i, logger in enumerate(loggers):
        if not isinstance(logger, Logger):
            raise TypeError(f"`client_loggers[{i}]` must be a lightning.pytorch Logger, got {type(logger).__name__}")
        try:
            client_logger(logger, 0)
        except TypeError as exc:
            raise ArgumentError(f"client_loggers[{i}]", one_line(exc)) from exc
    return [
        Client(i, train, template, on_error=policy, val_data=val, loggers=loggers)
        for i, (train, val) in enumerate(loaders)
    ]


def evaluate_clients(value: Any, clients: Sequence[Client], *, remote: bool = False) -> int | None:
    """How many clients evaluate in federated evaluation: ``None``, a number or a fraction of those able.

    With ``remote`` clients, whose machines report their validation data only once they are asked,
    all count as able here; those that report none are not sampled.
    """
    if value is None:
        return None
    able = len(clients) if remote else sum(c.val_data is not None for c in clients)
    if not able:
        raise ArgumentError(
            "evaluate_clients",
            "needs clients with validation data, and none has any: hold some out (`data.val_fraction` in YAML), or "
            "give `client_data` entries as (train, val) pairs or LightningDataModules with a val_dataloader",
        )
    if isinstance(value, float):
        fraction = FRACTION.check("evaluate_clients", value)
        return max(1, round(fraction * able))
    hint = f"{able} clients" if remote else f"{able} clients have validation data"
    return int(COUNT.up_to(able).check("evaluate_clients", value, hint=hint))


def local_keys(strategy: Strategy, model: LightningModule) -> None:
    """Refuse ``local_keys`` that keep nothing local, or everything.

    A pattern that matches no state-dict name of ``model`` keeps nothing; patterns that together
    match every name leave nothing to aggregate, and the federation would train each client alone.
    """
    names = list(model.state_dict())
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    for pattern in strategy.local_keys:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            problem = f"{pattern!r} matches no state-dict name of the model; its names: {shown}"
            raise ArgumentError("local_keys", problem)
    if names and all(strategy.is_local(name) for name in names):
        patterns = ", ".join(repr(p) for p in strategy.local_keys)
        problem = (
            f"{patterns} match every state-dict name of the model ({shown}), so nothing would ever be aggregated "
            "and each client would train alone; name only the layers each client keeps, e.g. ['*bn*']"
        )
        raise ArgumentError("local_keys", problem)


def aggregation_fn(value: Any) -> Any:
    if value is not None and not callable(value):
        raise TypeError(
            f"`evaluate_metrics_aggregation_fn` must be a function [(num_samples, metrics), ...] -> metrics, "
            f"got {type(value).__name__}"
        )
    return value


def round_timeout(value: Any) -> float | None:
    return None if value is None else float(POSITIVE.check("round_timeout", value))


def checkpoint_dir(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"`checkpoint_dir` must be a path or None, got {type(value).__name__}")
    return os.fspath(value)


def selection_weights(weights: Any, num_clients: int) -> list[float]:
    """``client_selection_weights`` as one weight per client (clients not named get 0)."""
    if not isinstance(weights, Mapping):
        raise TypeError(f"`client_selection_weights` must be a dict client id -> weight, got {type(weights).__name__}")
    out = [0.0] * num_clients
    for client_id, weight in weights.items():
        if isinstance(client_id, bool) or not isinstance(client_id, int) or not 0 <= client_id < num_clients:
            raise ArgumentError(
                "client_selection_weights", f"names client {client_id!r}; client ids are 0..{num_clients - 1}"
            )
        value = float(weight)
        if not math.isfinite(value) or value < 0:
            raise ArgumentError(
                f"client_selection_weights[{client_id}]", f"must be a finite weight >= 0, got {weight!r}"
            )
        out[client_id] = value
    if not any(out):
        raise ArgumentError("client_selection_weights", "gives no client a positive weight; no client can be selected")
    return out


def privacy_budgets(callbacks: Sequence[Any], strategy: Strategy) -> None:
    """Refuse a ``PrivacyBudget`` on ``privacy/epsilon`` that no account feeds, or that the first round spends.

    Raises:
        ArgumentError: At ``callbacks[i]`` or ``callbacks[i].max_epsilon``.
    """
    account = privacy_account(strategy)
    for i, callback in enumerate(callbacks):
        if not isinstance(callback, PrivacyBudget) or callback.metric != "privacy/epsilon":
            continue
        if account is None:
            raise ArgumentError(
                f"callbacks[{i}]",
                "PrivacyBudget watches `privacy/epsilon`, which only a strategy wrapped for differential privacy "
                "with a `delta` publishes (YAML: a `privacy` section with `delta`)",
            )
        first = account.epsilon(1)
        if first > callback.max_epsilon:
            raise ArgumentError(
                f"callbacks[{i}].max_epsilon",
                f"is {callback.max_epsilon:g}, and the first round alone spends epsilon {first:.4g} at delta "
                f"{account.delta:g}: raise the budget, the noise or the number of clients",
            )
