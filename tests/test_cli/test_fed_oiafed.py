"""OiaFed 0.2's callbacks named in a config by OiaFed's registry names, run in-process by the CLI."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from cli_helpers import read_metrics, small_config, snapshot, write_config

from lightning_bridge.fed import main

pytestmark = pytest.mark.skipif(importlib.util.find_spec("oiafed") is None, reason="needs the oiafed extra")


def test_fed_oiafed_early_stopping_by_registry_name_stops_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # min_delta larger than any change: round 1 sets the best, round 2 is one round without improvement
    early = {"type": "federated.callback.early_stopping"}
    early["args"] = {"monitor": "accuracy", "patience": 1, "min_delta": 10.0, "mode": "max"}  # type: ignore[assignment]
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path / "c.yaml", small_config(rounds=4, callbacks=[early]))

    status = main(["--config", "c.yaml"])

    assert status == 0
    assert [row["round"] for row in read_metrics(tmp_path / "out" / "metrics.csv")] == ["1", "2"]
    assert "rounds run: 2 of 4 (stopped early by a callback)" in capsys.readouterr().out


def test_fed_oiafed_misspelt_registry_name_gets_a_close_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path / "c.yaml", small_config(callbacks=[{"type": "federated.callback.early_stoping"}]))
    before = snapshot(tmp_path)

    status = main(["--config", "c.yaml"])

    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert err.startswith("error: callbacks[0].type: unknown callback type 'federated.callback.early_stoping'")
    assert "(did you mean `federated.callback.early_stopping`?)" in err
    assert snapshot(tmp_path) == before
