"""``evaluate.clients.aggregation`` naming a function of Flower 1.41's form, ``(records, weighting_metric_name)``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytest.importorskip("flwr")
pytestmark = pytest.mark.flower

from federated.app import prepare_run  # noqa: E402


def test_federated_evaluation_takes_flowers_own_metrics_aggregation(tmp_path: Path) -> None:
    # Prepare: Flower 1.41's sample-weighted MetricRecord aggregation, named in the YAML
    config = {
        "seed": 0, "rounds": 1, "output_dir": str(tmp_path / "out"), "threads": 1,
        "data": {"num_clients": 2, "partition": {"type": "iid"}, "val_fraction": 0.3},
        "model": {"args": {"hidden": 8}},
        "evaluate": {"server": False, "clients": {
            "per_round": 2, "aggregation": "flwr.serverapp.strategy.strategy_utils:aggregate_metricrecords",
        }},
        "trainer": {"accelerator": "cpu"},
    }
    path = tmp_path / "fed.yaml"
    path.write_text(yaml.safe_dump(config))

    # Execute
    prepare_run(str(path)).execute()

    # Assert: the round's client metrics are Flower's weighted means of the clients' evaluations
    lines = (tmp_path / "out" / "checkpoints" / "history.jsonl").read_text().splitlines()
    [entry] = [json.loads(line) for line in lines]
    evaluations = [(e["num_samples"], e["metrics"]) for e in entry["evaluations"]]
    total = sum(n for n, _ in evaluations)
    assert len(evaluations) == 2
    for name in evaluations[0][1]:
        expected = sum(n * metrics[name] for n, metrics in evaluations) / total
        assert entry["metrics"][f"clients/{name}"] == pytest.approx(expected, rel=1e-12)
