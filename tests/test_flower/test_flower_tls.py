"""The digits federation on a local Flower deployment over TLS, from certificates the test makes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

pytest.importorskip("flwr")
pytest.importorskip("cryptography")
pytestmark = pytest.mark.flower


@pytest.fixture
def tls_federation(kit: SimpleNamespace, tmp_path: Path) -> Iterator[Any]:
    """A SuperLink serving TLS with a certificate for 127.0.0.1 from a throw-away CA, and 2 SuperNodes trusting it."""
    fed = kit.Federation(tmp_path / "federation", nodes=2, tls=True)
    try:
        yield fed.start()
    finally:
        fed.stop()


def test_flower_federation_over_tls_matches_sequential(
    tls_federation: Any, kit: SimpleNamespace, tmp_path: Path
) -> None:
    # Prepare: the YAML travels inside the app directory (a relative `config` is looked up there)
    config = kit.config(tmp_path / "out", tmp_path / "touched")
    yaml_path = kit.write_yaml(tmp_path / "fed.yaml", config)
    app = kit.write_app(tmp_path / "app", "fed.yaml")
    shutil.copy(yaml_path, app / "fed.yaml")

    # Execute
    done = tls_federation.run(app)
    reference = kit.run_sequential({**config, "backend": {"type": "sequential", "args": {}}}, app, tmp_path / "seq")

    # Assert
    assert "rounds run: 3 of 3" in done.stdout
    assert "https://" in tls_federation.log("superlink") or "ssl" in tls_federation.log("superlink").lower()
    ends = [h for h in kit.hooks(tmp_path / "out") if h["hook"] == "on_round_end"]
    assert [(h["round"], h["clients"]) for h in ends] == [(1, [0, 1]), (2, [0, 1]), (3, [0, 1])]
    saved = torch.load(tmp_path / "out" / "checkpoints" / "last.ckpt", weights_only=True)
    assert {cid: s["callbacks"]["FitCounter"]["fits"] for cid, s in saved["clients"].items()} == {0: 3, 1: 3}
    ours = torch.load(tmp_path / "out" / "final_weights.pt", weights_only=True)
    theirs = torch.load(reference / "final_weights.pt", weights_only=True)
    assert all(torch.equal(ours[name], theirs[name]) for name in theirs)
