"""The client-algorithm strategies from YAML: ``examples/fed_scaffold.yaml`` runs, and keeps its control variates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cli_helpers import REPO, read_metrics, small_config, write_config

from lightning_bridge.fed import main

SCAFFOLD = REPO / "examples" / "fed_scaffold.yaml"


def test_fed_scaffold_example_runs_and_checkpoints_every_control_variate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Execute: the example, 2 rounds
    monkeypatch.chdir(tmp_path)
    status = main(["--config", str(SCAFFOLD), "--set", "output_dir=out", "--set", "rounds=2"])

    # Assert: the server's variate for every parameter, a variate for each client that trained
    assert status == 0
    assert [int(r["round"]) for r in read_metrics(tmp_path / "out" / "metrics.csv")] == [1, 2]
    saved = torch.load(tmp_path / "out" / "checkpoints" / "last.ckpt", weights_only=True)
    weights = saved["weights"]
    assert sorted(saved["strategy"]["c"]) == sorted(weights)
    variates = {cid: s["algorithms"]["scaffold"]["c_i"] for cid, s in saved["clients"].items()}
    assert 10 <= len(variates) <= 20 and all(sorted(v) == sorted(weights) for v in variates.values())


def test_fed_clients_dp_sgd_trains_each_client_privately_and_checkpoints_its_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: 4 digits clients, 2 per round, 2 rounds, DP-SGD in every client fit
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path / "c.yaml", small_config(
        rounds=2, clients={"per_round": 2, "dp_sgd": {"noise_multiplier": 1.0, "max_grad_norm": 1.0}},
    ))
    # Execute
    status = main(["--config", "c.yaml"])
    # Assert: the round's epsilon in metrics.csv, an account for each client that trained
    assert status == 0
    rows = read_metrics(tmp_path / "out" / "metrics.csv")
    assert all(float(r["dp/epsilon"]) > 0 for r in rows)
    saved = torch.load(tmp_path / "out" / "checkpoints" / "last.ckpt", weights_only=True)
    accounts = [s["algorithms"]["dp_sgd"]["history"] for s in saved["clients"].values()]
    assert accounts and all(steps > 0 for account in accounts for _, _, steps in account)
