"""The config's ``strategy``, wrapped as its ``privacy`` section says: what the server and every Flower node build."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from callbacks import ArgumentError, ConfigError, registered, resolve
from callbacks.arguments import check_arguments, one_line
from federated.app.callback_entries import built_entry
from federated.app.config import FLOWER_NAMES, flower_hint
from federated.strategies.strategy import Strategy

__all__ = ["build_federation_strategy", "build_strategy"]


def build_federation_strategy(config: Mapping[str, Any]) -> Strategy:
    """The ``strategy`` entry built, inside the ``privacy`` wrapper when ``privacy.type`` names one.

    Raises:
        ConfigError: What the strategy or the wrapper refuses, at its key (``privacy.args.clipping_norm``,
            ``privacy.delta``).
    """
    strategy = build_strategy(config["strategy"])
    section = config["privacy"]
    if section["type"] is None:
        for key, unset in (("args", {}), ("delta", None)):
            if section[key] != unset:
                raise ConfigError("is set, but `privacy.type` is not: name the wrapper, e.g. server_fixed_clipping",
                                  f"privacy.{key}")
        return strategy
    import federated.privacy  # noqa: F401 - registers the wrappers

    wrapper = resolve("privacy", section["type"], "privacy.type")
    args = dict(section["args"])
    for key, instead in (("inner", "the wrapped strategy is `strategy`"), ("delta", "it is `privacy.delta`")):
        if key in args:
            raise ConfigError(f"is no argument here: {instead}", f"privacy.args.{key}")
    check_arguments(wrapper, {"inner": strategy, "delta": section["delta"], **args}, "privacy.args")
    try:
        built: Strategy = wrapper(strategy, **args, delta=section["delta"])
        return built
    except ArgumentError as exc:
        key = "privacy.delta" if exc.argument == "delta" else f"privacy.args.{exc.argument}"
        raise ConfigError(exc.problem, key) from exc
    except ImportError as exc:
        raise ConfigError(one_line(exc), "privacy.delta") from exc


def build_strategy(section: Mapping[str, Any]) -> Strategy:
    """Build the ``strategy`` entry and check that it is a ``federated.Strategy``.

    An argument the strategy does not take, but Flower or another strategy does, is refused with the
    key that takes it here (``fraction_fit``: ``clients.fraction``; ``eta``: ``fedadam``, ...).
    """
    target = resolve("strategy", section["type"], "strategy.type")
    if callable(target):
        check_arguments(target, section["args"], "strategy.args", elsewhere=_strategy_arguments_elsewhere())
    return built_entry("strategy", section, Strategy)


def _strategy_arguments_elsewhere() -> dict[str, str]:
    """Where a strategy argument belongs when the configured strategy does not take it."""
    takers: dict[str, list[str]] = {}
    for name in registered("strategy"):
        target = resolve("strategy", name)
        for arg in inspect.signature(target).parameters:
            takers.setdefault(arg, []).append(f"`{name}`")
    hints = {arg: f" (an argument of {', '.join(names)})" for arg, names in takers.items()}
    return {**hints, **{name: flower_hint(name) for name in FLOWER_NAMES}}
