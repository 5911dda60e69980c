"""Without the ray extra, asking for the Ray backend fails with one line that says what to install."""

from __future__ import annotations

import sys

import pytest

from federated import MLP, FederatedTrainer, RayBackend, digits_federation
from federated.backends._ray_worker import MISSING_RAY

MESSAGE = "backend 'ray' needs the ray extra: pip install 'lightning-bridge[ray]'"


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import ray` fail, as in an environment without the extra."""
    monkeypatch.setitem(sys.modules, "ray", None)


def test_ray_backend_without_ray_names_the_extra(no_ray: None) -> None:
    assert MISSING_RAY == MESSAGE
    with pytest.raises(ImportError) as info:
        RayBackend(num_workers=2)
    assert str(info.value) == MESSAGE


def test_federated_trainer_with_backend_ray_without_ray(no_ray: None) -> None:
    loaders, _ = digits_federation(num_clients=2, partition="iid", seed=0)
    with pytest.raises(ImportError, match=r"needs the ray extra"):
        FederatedTrainer(MLP(hidden=8), loaders, rounds=1, backend="ray")
