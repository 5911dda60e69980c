"""Strategies from YAML entries: registered names, typed arguments, one-line errors."""

from __future__ import annotations

from typing import Any

import pytest

import federated
from callbacks import ConfigError, build, registered
from federated.strategies.fedadam import FedAdam
from federated.strategies.fedprox import FedProx

NAMES = ["fedadagrad", "fedadam", "fedavgm", "fedmedian", "fedprox", "fedtrimmedavg", "fedyogi"]


def test_every_strategy_is_registered_and_exported() -> None:
    assert set(NAMES) <= set(registered("strategy"))
    for name in NAMES:
        built = build("strategy", {"type": name}, "strategy")
        assert isinstance(built, federated.Strategy)
        assert getattr(federated, type(built).__name__) is type(built)


def test_yaml_entry_builds_the_strategy_with_its_arguments() -> None:
    fedadam = build("strategy", {"type": "fedadam", "args": {"eta": 0.01, "beta_1": 0.8, "tau": 1}}, "strategy")

    assert isinstance(fedadam, FedAdam)
    assert (fedadam.eta, fedadam.beta_1, fedadam.beta_2, fedadam.tau) == (0.01, 0.8, 0.99, 1.0)


def test_fedprox_name_alone_uses_the_default_mu() -> None:
    fedprox = build("strategy", "fedprox", "strategy")

    assert isinstance(fedprox, FedProx) and fedprox.mu == 0.01


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"type": "fedadam", "args": {"eta_l": 0.1}},
            "strategy.args.eta_l: unknown argument `eta_l` (did you mean `eta`?); "
            "accepted: beta_1, beta_2, eta, local_keys, tau",
        ),
        ({"type": "fedprox", "args": {"mu": "big"}}, "strategy.args.mu: expected float, got str 'big'"),
        (
            {"type": "fedtrimmedavg", "args": {"beta": 0.7}},
            "strategy.args.beta: must be a number in [0, 0.5), got 0.7; "
            "it is the fraction cut at each end",
        ),
        ({"type": "fedadagrad", "args": {"beta_2": 0.9}}, "strategy.args.beta_2: unknown argument `beta_2`"),
    ],
)
def test_bad_yaml_argument_is_one_line_config_error(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build("strategy", entry, "strategy")

    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)
