"""The federation's YAML configuration: defaults, validation with key paths, ``--set`` overrides.

Every error is a :class:`~callbacks.ConfigError` whose message is one line naming the key path,
what was found and what is accepted.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from callbacks import ConfigError, load_yaml, read_yaml_file
from callbacks.arguments import echo, matches, mismatch, suggest
from federated.rules import COUNT, DELTA, FRACTION, HELD_OUT, POSITIVE, SEED, Rule

__all__ = [
    "DEFAULTS",
    "FLOWER_NAMES",
    "apply_override",
    "flower_hint",
    "load_config",
    "read_yaml",
    "validate_config",
]

INT64_MAX = 2**63 - 1
"""The largest integer a config value may hold: counts reach torch and NumPy as 64-bit integers (seeds: 32 bits)."""

FLOWER_NAMES: dict[str, str] = {
    "num_rounds": "`rounds`",
    "fraction_fit": "`clients.fraction`",
    "min_fit_clients": "`clients.per_round`",
    "min_available_clients": "`data.num_clients`, every client being available in every round",
    "accept_failures": "`clients.min_clients`, the fewest clients that must succeed in a round",
    "proximal_mu": "`strategy.args.mu` of `strategy.type: fedprox`",
    "eta_l": "`model.args.lr`, the clients' learning rate",
    "fraction_evaluate": "`evaluate.clients.fraction`",
    "min_evaluate_clients": "`evaluate.clients.per_round`",
    "evaluate_metrics_aggregation_fn": "`evaluate.clients.aggregation`, an import path `pkg.module:function`",
    "fraction_train": "`clients.fraction`",
    "min_train_nodes": "`clients.per_round`",
    "min_evaluate_nodes": "`evaluate.clients.per_round`",
    "min_available_nodes": "`data.num_clients`, every client being available in every round",
    "train_metrics_aggr_fn": "the clients' sample-weighted mean, which no key changes",
    "evaluate_metrics_aggr_fn": "`evaluate.clients.aggregation`, an import path `pkg.module:function`",
}
"""Flower's names of strategy and server settings (the legacy strategies' and 1.41's), and the key to use here."""


@dataclass(frozen=True)
class _Field:
    """One configuration value: its accepted type, default and an extra check."""

    hint: Any
    default: Any = None
    check: Callable[[Any], str | None] | None = None  # returns what is wrong, or None


@dataclass(frozen=True)
class _Section:
    """A mapping of named fields; ``open_keys`` sections pass unknown keys through."""

    fields: dict[str, _Field | _Section] = field(default_factory=dict)
    open_keys: bool = False


def _within(rule: Rule) -> Callable[[Any], str | None]:
    """The check of a number in the range of ``rule`` (an int's ends at :data:`INT64_MAX`); NaN is in no range.

    Example:
        >>> _within(FRACTION)(1.5)
        'must be in (0, 1]'
    """
    if rule.integer:
        rule = rule.up_to(INT64_MAX)
    text = rule.span()
    return lambda v: None if rule.contains(v) else f"must be in {text}"


def _import_path(v: Any) -> str | None:
    return None if re.fullmatch(r"[\w.]+:[\w.]+", v) else "must be an import path `pkg.module:function`"


def _entries(v: Any) -> str | None:
    return None if all(isinstance(e, (str, Mapping)) for e in v) else "each entry must be a mapping {type, args}"


_SCHEMA = _Section(
    {
        "seed": _Field(int, 0, _within(SEED)),
        "rounds": _Field(int, 20, _within(COUNT)),
        "output_dir": _Field(str, "runs/federation", lambda v: None if v.strip() else "must not be empty"),
        "threads": _Field(int | None, None, _within(Rule(1, 1024, integer=True))),
        "data": _Section(
            {
                "type": _Field(str, "digits"),
                "args": _Field(dict, {}),
                "num_clients": _Field(int, 10, _within(COUNT)),
                "partition": _Section(
                    {
                        "type": _Field(Literal["iid", "dirichlet", "shards"], "iid"),
                        "alpha": _Field(float, 0.5, _within(POSITIVE)),
                        "shards_per_client": _Field(int, 2, _within(COUNT)),
                    }
                ),
                "test_fraction": _Field(float, 0.2, _within(HELD_OUT)),
                "val_fraction": _Field(float, 0.0, _within(HELD_OUT)),
                "batch_size": _Field(int, 32, _within(COUNT)),
            }
        ),
        "model": _Section({"type": _Field(str, "mlp"), "args": _Field(dict, {})}),
        "clients": _Section(
            {
                "per_round": _Field(int | None, None, _within(COUNT)),
                "fraction": _Field(float | None, None, _within(FRACTION)),
                "local_epochs": _Field(int, 1, _within(COUNT)),
                "min_clients": _Field(int, 1, _within(COUNT)),
                "keep_optimizer_state": _Field(bool, False),
                "round_timeout": _Field(float | None, None, _within(POSITIVE)),
                "dp_sgd": _Section(
                    {
                        "noise_multiplier": _Field(float | None, None, _within(Rule(0))),
                        "max_grad_norm": _Field(float, 1.0, _within(POSITIVE)),
                        "delta": _Field(float, 1e-5, _within(Rule(0, 1, low_open=True, high_open=True))),
                        "poisson_sampling": _Field(bool, True),
                    }
                ),
            }
        ),
        "evaluate": _Section(
            {
                "server": _Field(bool, True),
                "clients": _Section(
                    {
                        "per_round": _Field(int | None, None, _within(COUNT)),
                        "fraction": _Field(float | None, None, _within(FRACTION)),
                        "every": _Field(int, 1, _within(COUNT)),
                        "aggregation": _Field(str | None, None, _import_path),
                    }
                ),
            }
        ),
        "strategy": _Section({"type": _Field(str, "fedavg"), "args": _Field(dict, {})}),
        "privacy": _Section(
            {
                "type": _Field(str | None, None),
                "args": _Field(dict, {}),
                "delta": _Field(float | None, None, _within(DELTA)),
            }
        ),
        "backend": _Section({"type": _Field(str, "sequential"), "args": _Field(dict, {})}),
        "trainer": _Section(open_keys=True),
        "callbacks": _Field(list, [], _entries),
        "client_callbacks": _Field(list, [], _entries),
        "on_error": _Field(str, "warn", lambda v: None if v in ("warn", "raise") else "can be 'warn' or 'raise'"),
    }
)

DEFAULTS: dict[str, Any] = {}
"""The configuration with every default filled in (built from the schema below)."""


def _defaults(section: _Section) -> dict[str, Any]:
    return {
        name: _defaults(spec) if isinstance(spec, _Section) else copy.deepcopy(spec.default)
        for name, spec in section.fields.items()
    }


DEFAULTS.update(_defaults(_SCHEMA))


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping from ``path`` with :func:`callbacks.load_yaml` (``1e-3`` is a float).

    Raises:
        ConfigError: The file is missing, unreadable, larger than 1 MiB or not UTF-8 text, the
            YAML is malformed (with its line) or too large, or the top level is not a mapping.
    """
    path = os.fspath(path)
    data = read_yaml_file(path)
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"the top level must be a mapping of keys, got {type(data).__name__}", path)
    return dict(data)


_KEY_PATH = re.compile(r"[^.\[\]]+(?:\.[^.\[\]]+|\[\d+\])*")
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def apply_override(config: dict[str, Any], assignment: str) -> None:
    """Apply one ``--set key.path=value`` (the value is parsed as YAML) to ``config`` in place.

    Example:
        >>> cfg = {"clients": {"per_round": 5}}
        >>> apply_override(cfg, "clients.per_round=3")
        >>> apply_override(cfg, "callbacks=[{type: early_stopping}]")
        >>> cfg
        {'clients': {'per_round': 3}, 'callbacks': [{'type': 'early_stopping'}]}
    """
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not _KEY_PATH.fullmatch(key):
        raise ConfigError(
            f"expected KEY.PATH=VALUE (a key path like `clients.per_round` or `callbacks[0].args.patience`), "
            f"got {echo(assignment)}",
            "--set",
        )
    value = load_yaml(raw, f"--set {key}")
    parts: list[str | int] = [int(index) if index else name for name, index in _PATH_PART.findall(key)]
    node: Any = config
    for i, part in enumerate(parts[:-1]):
        nxt: Any = {} if not isinstance(parts[i + 1], int) else []
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise ConfigError(f"index [{part}] is out of range", f"--set {key}")
            node = node[part]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"`{part}` is not inside a mapping", f"--set {key}")
        if node.get(part) is None:
            node[part] = nxt
        node = node[part]
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last > len(node):
            raise ConfigError(f"index [{last}] is out of range", f"--set {key}")
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"`{last}` is not inside a mapping", f"--set {key}")


def validate_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Check every key, type and range, fill defaults and return the resolved configuration.

    Raises:
        ConfigError: One line with the key path, what was found and what is accepted.

    Example:
        >>> validate_config({"rounds": 3})["clients"]["local_epochs"]
        1
        >>> validate_config({"rouns": 3})
        Traceback (most recent call last):
        ...
        callbacks.exceptions.ConfigError: rouns: unknown key (did you mean `rounds`?); accepted: ...
    """
    config = _check_section(_SCHEMA, raw, "")
    clients, data = config["clients"], config["data"]
    if clients["per_round"] is not None and clients["fraction"] is not None:
        raise ConfigError("give `per_round` or `fraction`, not both", "clients")
    if clients["per_round"] is None and clients["fraction"] is None:
        clients["per_round"] = data["num_clients"]
    dp_sgd = clients["dp_sgd"]  # its defaults alone (a config resolved already, as Flower's nodes get it) are off
    if dp_sgd["noise_multiplier"] is None and dp_sgd != DEFAULTS["clients"]["dp_sgd"]:
        raise ConfigError("required to train with DP-SGD (e.g. 1.0); or leave `clients.dp_sgd` out", (
            "clients.dp_sgd.noise_multiplier"
        ))
    evaluated = config["evaluate"]["clients"]
    if evaluated["per_round"] is not None and evaluated["fraction"] is not None:
        raise ConfigError("give `per_round` or `fraction`, not both", "evaluate.clients")
    if evaluated["per_round"] is None and evaluated["fraction"] is None and evaluated["every"] != 1:
        raise ConfigError(
            f"{evaluated['every']} with no clients to evaluate; set `evaluate.clients.per_round` or "
            "`evaluate.clients.fraction` too",
            "evaluate.clients.every",
        )
    return config


def load_config(path: str | os.PathLike[str] | None, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Read ``path`` (or start from the defaults when ``None``), apply ``--set`` overrides, validate."""
    raw = read_yaml(path) if path is not None else {}
    for assignment in overrides:
        apply_override(raw, assignment)
    return validate_config(raw)


def _check_section(section: _Section, raw: Any, path: str) -> dict[str, Any]:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"expected a mapping, got {type(raw).__name__} {echo(raw)}", path or "<top level>")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in section.fields:
            if section.open_keys:
                out[key] = value
                continue
            raise ConfigError(f"unknown key{_instead(str(key), list(section.fields))}", where)
        spec = section.fields[key]
        if isinstance(spec, _Section):
            out[key] = _check_section(spec, value, where)
            continue
        if not matches(value, spec.hint):
            raise ConfigError(mismatch(value, spec.hint), where)
        problem = spec.check(value) if spec.check is not None and value is not None else None
        if problem:
            raise ConfigError(f"{problem}, got {echo(value)}", where)
        out[key] = float(value) if isinstance(value, int) and matches(0.5, spec.hint) else value
    for name, spec in section.fields.items():
        if name not in out:
            out[name] = _check_section(spec, {}, name) if isinstance(spec, _Section) else copy.deepcopy(spec.default)
    return out


def _instead(key: str, accepted: list[str]) -> str:
    """What to write instead of the unknown ``key``: the key here of Flower's name, or a close match; and the keys."""
    if key in FLOWER_NAMES:
        return f"{flower_hint(key)}; accepted: {', '.join(accepted)}"
    return f"{suggest(key, accepted)}; accepted: {', '.join(accepted)}"


def flower_hint(name: str) -> str:
    """`` (Flower's `fraction_fit`; here it is `clients.fraction`)`` for a name of :data:`FLOWER_NAMES`."""
    return f" (Flower's `{name}`; here it is {FLOWER_NAMES[name]})"
