"""A federation on data that exists only at its sites: each SuperNode reads the file its node config names, and
the server has none (the real SuperLink and two SuperNodes on 127.0.0.1 of ``conftest.py``, ``flwr run``)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")
pytestmark = pytest.mark.flower

ROWS = (40, 70)  # records at site 0 and site 1


def write_records(path: Path, rows: int, seed: int) -> Path:
    """``rows`` records of 8 features and a label that the features decide."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, 8))
    labels = (features[:, 0] + features[:, 1] > 0).astype(float)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, np.column_stack([features, labels]), delimiter=",")
    return path


def test_flower_sites_train_on_records_only_they_hold(federation: Any, kit: SimpleNamespace, tmp_path: Path) -> None:
    # Prepare: each site's file lies in a folder only its SuperNode is told of
    for i, rows in enumerate(ROWS):
        write_records(federation.root / kit.site_file.format(i=i), rows, seed=i)
    config = {
        "seed": 0, "rounds": 1, "output_dir": str(tmp_path / "out"), "threads": 1,
        "data": {"type": "lb_app_parts:site_records", "num_clients": 2, "batch_size": 16,
                 "args": {"calls": str(tmp_path / "calls")}},
        "model": {"type": "mlp", "args": {"in_features": 8, "num_classes": 2, "hidden": 8, "lr": 0.1}},
        "evaluate": {"server": False},
        "clients": {"per_round": 2, "min_clients": 2},
        "backend": {"type": "flower", "args": {"timeout": 120, "discovery_timeout": 60}},
        "trainer": {"accelerator": "cpu"},
    }
    app = kit.write_app(tmp_path / "app", kit.write_yaml(tmp_path / "fed.yaml", config))

    # Execute
    done = federation.run(app)

    # Assert: the round trained both sites, each on its own records, counted by what its node reported
    assert "rounds run: 1 of 1" in done.stdout
    lines = (tmp_path / "out" / "checkpoints" / "history.jsonl").read_text().splitlines()
    history = [json.loads(line) for line in lines]
    assert [[(u["client_id"], u["num_samples"]) for u in r["updates"]] for r in history] == [[(0, 40), (1, 70)]]
    assert all(r["failures"] == [] for r in history)
    # the ServerApp called the data function for its own share only, each ClientApp for its site's
    calls = kit.data_calls(tmp_path / "calls")
    assert {site for program, site in calls if program == "flwr-serverapp"} == {"server"}
    assert {site for program, site in calls if program == "flwr-clientapp"} == {"client0", "client1"}
    assert (tmp_path / "out" / "final_weights.pt").is_file()
