"""Strategies from YAML entries: registered names, typed arguments, one-line errors."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import federated
from callbacks import ConfigError, build, registered
from federated.app.config import validate_config
from federated.app.strategy_entry import build_strategy
from federated.strategies.fedadam import FedAdam
from federated.strategies.fedprox import FedProx

NAMES = [
    "bulyan", "fedadagrad", "fedadam", "fedavgm", "fedmedian", "fednova", "fedprox", "fedtrimmedavg", "fedyogi",
    "krum", "multikrum", "scaffold",
]


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
        ({"type": "scaffold", "args": {"eta_g": 0}}, "strategy.args.eta_g: must be a number in (0, inf), got 0"),
        ({"type": "scaffold", "args": {"eta_l": 0.1}}, "strategy.args.eta_l: unknown argument `eta_l` (did you mean "
                                                       "`eta_g`?)"),
        ({"type": "scaffold", "args": {"weighted": "yes"}}, "strategy.args.weighted: expected bool, got str 'yes'"),
        ({"type": "fednova", "args": {"momentum": 1.0}}, "strategy.args.momentum: must be a number in [0, 1), got 1"),
        (
            {"type": "krum", "args": {"num_malicious_nodes": -1}},
            "strategy.args.num_malicious_nodes: must be an int in [0, inf), got -1; it is the attackers tolerated",
        ),
        (
            {"type": "krum", "args": {"num_nodes_to_select": 3}},
            "strategy.args.num_nodes_to_select: unknown argument `num_nodes_to_select`; accepted: local_keys, "
            "num_malicious_nodes",
        ),
    ],
)
def test_bad_yaml_argument_is_one_line_config_error(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build("strategy", entry, "strategy")

    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"clients": {"fraction_train": 0.5}}, "clients.fraction_train: unknown key (Flower's `fraction_train`; "
                                               "here it is `clients.fraction`)"),
        ({"clients": {"min_train_nodes": 2}}, "clients.min_train_nodes: unknown key (Flower's `min_train_nodes`; "
                                              "here it is `clients.per_round`)"),
        ({"evaluate": {"clients": {"min_evaluate_nodes": 2}}}, "evaluate.clients.min_evaluate_nodes: unknown key "
         "(Flower's `min_evaluate_nodes`; here it is `evaluate.clients.per_round`)"),
        ({"min_available_nodes": 2}, "min_available_nodes: unknown key (Flower's `min_available_nodes`; here it is "
                                     "`data.num_clients`"),
        ({"clients": {"train_metrics_aggr_fn": "m:f"}}, "clients.train_metrics_aggr_fn: unknown key (Flower's "
         "`train_metrics_aggr_fn`; here it is the clients' sample-weighted mean, which no key changes)"),
        ({"evaluate": {"clients": {"evaluate_metrics_aggr_fn": "m:f"}}}, "evaluate.clients.evaluate_metrics_aggr_fn: "
         "unknown key (Flower's `evaluate_metrics_aggr_fn`; here it is `evaluate.clients.aggregation`"),
    ],
)
def test_flower_141_names_in_the_config_name_the_key_here(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config({"rounds": 1, **config})

    assert str(info.value).startswith(message)


def test_flower_141_names_as_strategy_arguments_name_the_key_here() -> None:
    with pytest.raises(ConfigError, match=r"^strategy\.args\.min_train_nodes: unknown argument `min_train_nodes` "
                                          r"\(Flower's `min_train_nodes`; here it is `clients\.per_round`\)"):
        build_strategy({"type": "fedavg", "args": {"min_train_nodes": 2}})


@pytest.mark.parametrize("name", ["FedAdam", "FedAdagrad", "FedYogi"])
def test_server_optimizer_defaults_are_flower_141s(name: str) -> None:
    flwr_strategy = pytest.importorskip("flwr.serverapp.strategy")
    theirs = inspect.signature(getattr(flwr_strategy, name)).parameters
    ours = inspect.signature(getattr(federated, name)).parameters
    shared = [arg for arg in ("eta", "beta_1", "beta_2", "tau") if arg in theirs and arg in ours]

    assert "tau" in shared
    assert {arg: ours[arg].default for arg in shared} == {arg: theirs[arg].default for arg in shared}


@pytest.mark.parametrize("name", ["Krum", "MultiKrum", "Bulyan"])
def test_robust_strategy_arguments_and_defaults_are_flower_141s(name: str) -> None:
    flwr_strategy = pytest.importorskip("flwr.serverapp.strategy")
    theirs = inspect.signature(getattr(flwr_strategy, name)).parameters
    ours = inspect.signature(getattr(federated, name)).parameters
    shared = {arg: p.default for arg, p in ours.items() if arg != "local_keys"}  # Flower has no local keys

    assert set(shared) <= set(theirs)
    assert shared == {arg: theirs[arg].default for arg in shared}
