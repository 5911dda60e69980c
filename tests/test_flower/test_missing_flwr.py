"""Without the flower extra, asking for the Flower backend fails with one line that says what to install;
with it, the Flower backend refuses to run outside a Flower ServerApp, naming the command to use.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from federated import MLP, FederatedTrainer, digits_federation
from federated.backends import FlowerBackend
from federated.backends.flower_messages import NOT_IN_SERVERAPP
from federated.backends.flower_records import MISSING_FLWR
from lightning_bridge.fed import main

MESSAGE = "backend 'flower' needs the flower extra: pip install 'lightning-bridge[flower]'"


@pytest.fixture
def no_flwr(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import flwr` fail, as in an environment without the extra."""
    for name in [m for m in sys.modules if m == "flwr" or m.startswith("flwr.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "flwr", None)


def flower_config(tmp_path: Path) -> Path:
    path = tmp_path / "fed.yaml"
    config = {
        "rounds": 1, "output_dir": str(tmp_path / "out"), "data": {"num_clients": 2},
        "model": {"args": {"hidden": 8}}, "backend": {"type": "flower"},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_flower_backend_without_flwr_names_the_extra(no_flwr: None) -> None:
    assert MISSING_FLWR == MESSAGE
    with pytest.raises(ImportError) as info:
        FlowerBackend()
    assert str(info.value) == MESSAGE


def test_federated_trainer_with_backend_flower_without_flwr(no_flwr: None) -> None:
    loaders, _ = digits_federation(num_clients=2, partition="iid", seed=0)
    with pytest.raises(ImportError, match=r"needs the flower extra"):
        FederatedTrainer(MLP(hidden=8), loaders, rounds=1, backend="flower")


def test_cli_backend_flower_without_flwr_is_one_config_error(
    no_flwr: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(flower_config(tmp_path))]) == 2
    assert capsys.readouterr().err == f"error: backend.type: {MESSAGE}\n"


def test_cli_backend_flower_outside_flwr_run_names_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("flwr")
    assert main(["--config", str(flower_config(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {NOT_IN_SERVERAPP}\n"
    assert "`flwr run <app dir> <superlink connection>`" in err
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_flower_backend_start_without_a_grid_names_the_command() -> None:
    pytest.importorskip("flwr")
    fed = FederatedTrainer(MLP(hidden=8), 2, rounds=1, backend=FlowerBackend())
    with pytest.raises(RuntimeError, match=r"flwr run"):
        fed.fit()
