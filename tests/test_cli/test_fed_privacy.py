"""``examples/fed_privacy.yaml`` runs: an epsilon in every round's metrics, and the budget's stop in the summary."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import REPO, read_metrics

from lightning_bridge.fed import main

pytest.importorskip("dp_accounting")

PRIVACY = REPO / "examples" / "fed_privacy.yaml"


def test_fed_privacy_example_accounts_every_round_and_stops_on_its_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: the example, with the budget lowered so that it stops after a few rounds
    monkeypatch.chdir(tmp_path)

    # Execute
    status = main(["--config", str(PRIVACY), "--set", "output_dir=out", "--set", "callbacks[0].args.max_epsilon=14"])

    # Assert: epsilon grows each round, the last round's next one would pass 14, the summary says so
    rows = read_metrics(tmp_path / "out" / "metrics.csv")
    spent = [float(r["privacy/epsilon"]) for r in rows]
    out = capsys.readouterr().out
    assert status == 0
    assert 1 < len(rows) < 30 and spent == sorted(spent) and spent[-1] <= 14 < float(rows[-1]["privacy/epsilon_next"])
    assert f"rounds run: {len(rows)} of 30 (stopped at round {len(rows)}: epsilon {spent[-1]:.3g} of 14)" in out
