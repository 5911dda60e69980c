"""The metrics a configured federation reports, and the check that server callbacks watch one of them.

A round's metrics come from three sources: the clients' fits (``train_loss``, ``lr`` and what
the module logs while it trains, plus its validation metrics where the clients hold validation
data), the server's evaluation on the test set (the module's validation metrics) and the
federated evaluation (those metrics again, as ``clients/<name>``). A module tells which metrics
it logs with the class attributes ``training_metrics`` and ``validation_metrics`` (the built-in
``MLP`` does); for one that does not, only the source of a metric can be checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callbacks import ConfigError, MonitorCallback, resolve
from callbacks.arguments import echo

__all__ = ["check_monitored", "reported_metrics"]

LOOP_METRICS = ("train_loss", "lr")
"""What the round loop reports of every client fit, whatever the module logs."""

CLIENTS = "clients/"
"""The prefix of the federated evaluation's metrics."""


def reported_metrics(trainer: Any, config: Mapping[str, Any]) -> tuple[list[str], bool]:
    """The metric names the rounds of ``trainer``, built from ``config``, can report; and whether that list is complete.

    The list is complete when the module declares what it logs (``training_metrics`` and
    ``validation_metrics``, on the class that defines its ``training_step`` and ``validation_step``)
    and the federated evaluation keeps the default aggregation.
    """
    training = _declared(type(trainer.model), "training_metrics", "training_step")
    validation = _declared(type(trainer.model), "validation_metrics", "validation_step")
    names = [*LOOP_METRICS, *(training or ())]
    if trainer.test_data is not None or _clients_validate(trainer, config["data"]):
        names += validation or ()
    if trainer.evaluate_clients:
        names += [f"{CLIENTS}{name}" for name in validation or ()]
    custom = trainer.evaluate_clients and config["evaluate"]["clients"]["aggregation"] is not None
    return list(dict.fromkeys(names)), training is not None and validation is not None and not custom


def check_monitored(trainer: Any, config: Mapping[str, Any]) -> None:
    """Refuse a configured callback that watches a metric no source of this federation reports.

    Raises:
        ConfigError: At ``callbacks[i].args.metric``, naming the callback and the metrics there will be.
    """
    names, complete = reported_metrics(trainer, config)
    for index, (entry, callback) in enumerate(zip(config["callbacks"], trainer.callbacks, strict=False)):
        if not isinstance(callback, MonitorCallback) or not getattr(callback, "save_best", True):
            continue  # a ModelCheckpoint that keeps no best checkpoint reads no metric
        metric = callback.metric
        impossible = complete or (metric.startswith(CLIENTS) and not trainer.evaluate_clients)
        if metric not in names and impossible:
            kind = entry if isinstance(entry, str) else entry.get("type", type(callback).__name__)
            raise ConfigError(
                f"{echo(metric)}: `{kind}` watches a metric no round of this config reports; the rounds report "
                f"{', '.join(names)}; watch one of them, or turn on the evaluation that reports it "
                "(`evaluate.server` with a `data.test_fraction` above 0, or `evaluate.clients`)",
                f"callbacks[{index}].args.metric",
            )


def _declared(cls: type, attribute: str, step: str) -> tuple[str, ...] | None:
    """``cls``'s declared metric names, when the class that declares them also defines ``step``."""
    for owner in cls.__mro__:
        if step in vars(owner):
            names = vars(owner).get(attribute)
            return tuple(names) if names is not None else None
    return None


def _clients_validate(trainer: Any, data: Mapping[str, Any]) -> bool:
    """Whether the clients' fits validate on data of their own.

    Where the clients hold their data (Flower's SuperNodes), the config tells: a built-in data set
    holds validation data out with ``data.val_fraction``; a data function of the user's may return some.
    """
    if not trainer.backend.remote_data:
        return any(client.val_data is not None for client in trainer.clients)
    built_in = resolve("data", data["type"]).__module__.startswith("federated.")
    return data["val_fraction"] > 0 or not built_in
