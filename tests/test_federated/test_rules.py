"""The ranges of ``federated.rules``: the YAML schema and ``FederatedTrainer`` refuse the same values."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from callbacks import ArgumentError, ConfigError
from federated import MLP, FederatedTrainer
from federated.app.config import INT64_MAX, validate_config
from federated.rules import COUNT, FRACTION, HELD_OUT, POSITIVE, SEED, Rule

NAN, INF = math.nan, math.inf

SHARED = [
    # (YAML key, FederatedTrainer argument or None, rule, values outside, values inside)
    ("rounds", "rounds", COUNT, [0, -3], [1]),
    ("clients.local_epochs", "local_epochs", COUNT, [0], [1]),
    ("clients.min_clients", "min_clients", COUNT, [0], [1]),
    ("clients.fraction", "clients_per_round", FRACTION, [0.0, 1.5, NAN], [1e-9, 1.0]),
    ("clients.round_timeout", "round_timeout", POSITIVE, [0.0, -1.0, INF, NAN], [0.5]),
    ("evaluate.clients.every", "evaluate_every", COUNT, [0], [1]),
    ("seed", "seed", SEED, [-1, 2**32], [0, 2**32 - 1]),
    ("data.batch_size", "batch_size", COUNT, [0], [1]),
    ("clients.per_round", None, COUNT, [0], [1]),
    ("evaluate.clients.per_round", None, COUNT, [0], [1]),
    ("evaluate.clients.fraction", None, FRACTION, [0.0, 1.5], [1.0]),
    ("data.num_clients", None, COUNT, [0], [1]),
    ("data.partition.alpha", None, POSITIVE, [0.0, INF, NAN], [0.5]),
    ("data.partition.shards_per_client", None, COUNT, [0], [1]),
    ("data.test_fraction", None, HELD_OUT, [1.0, -0.1], [0.0]),
    ("data.val_fraction", None, HELD_OUT, [1.0, -0.1], [0.0]),
]


def _nested(key: str, value: Any) -> dict[str, Any]:
    """``{"a": {"b": value}}`` for the key path ``a.b``."""
    config: dict[str, Any] = {}
    node = config
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return config


@pytest.mark.parametrize(("key", "argument", "rule", "outside", "inside"), SHARED, ids=[s[0] for s in SHARED])
def test_rules_yaml_key_and_trainer_argument_refuse_what_their_rule_refuses(
    key: str,
    argument: str | None,
    rule: Rule,
    outside: list[Any],
    inside: list[Any],
    digits4: Any,
    make_model: Callable[..., MLP],
) -> None:
    # Prepare: the YAML's ints end at INT64_MAX, the trainer's where their rule does
    yaml_span = (rule.up_to(INT64_MAX) if rule.integer else rule).span()
    loaders, _ = digits4

    for value in outside:
        # Execute / Assert: refused at the key path, and by the trainer, with the rule's range
        with pytest.raises(ConfigError) as refused:
            validate_config(_nested(key, value))
        assert str(refused.value).startswith(f"{key}: must be in {yaml_span}, got "), refused.value
        if argument is not None:
            with pytest.raises(ArgumentError) as caught:
                FederatedTrainer(make_model(), loaders, **{argument: value})
            kind = "an int" if rule.integer else "a number"
            assert caught.value.problem.startswith(f"must be {kind} in {rule.span()}, got "), caught.value
    for value in inside:
        assert validate_config(_nested(key, value))  # no error: the rule takes it


def test_rules_check_and_contains_take_the_same_values() -> None:
    # Prepare
    cases = [(COUNT, [0, 1, 2**70, 1.0]), (FRACTION, [0.0, 0.5, 1, 1.5, NAN]), (POSITIVE, [0, 1e-9, INF, -INF])]

    for rule, values in cases:
        for value in values:
            # Execute
            try:
                rule.check("x", value)
                checked = True
            except ArgumentError:
                checked = False

            # Assert: contains ignores whether an int was asked for; the rest agrees
            assert checked == (rule.contains(value) and (isinstance(value, int) or not rule.integer)), (rule, value)
    assert COUNT.up_to(4).span() == "[1, 4]" and COUNT.up_to(INF) is COUNT
