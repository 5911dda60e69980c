"""An OiaFed 0.2 built-in as a client callback in Ray workers, which load OiaFed's module as the driver does."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from callbacks.oiafed import import_oiafed
from federated import MLP, FederatedTrainer, RayBackend, digits_federation

ray = pytest.importorskip("ray")
pytestmark = [
    pytest.mark.ray,
    pytest.mark.usefixtures("ray_session"),
    pytest.mark.skipif(importlib.util.find_spec("oiafed") is None, reason="needs the oiafed extra"),
]


def test_ray_oiafed_client_callback_runs_in_the_workers() -> None:
    builtin = import_oiafed("oiafed.callback.builtin")
    loaders, test = digits_federation(num_clients=2, partition="iid", batch_size=64, seed=0)
    torch.manual_seed(0)
    fed = FederatedTrainer(
        MLP(hidden=16), loaders, test, rounds=1, clients_per_round=2, seed=0, on_error="raise",
        client_callbacks=[builtin.LoggingCallback(log_round=False)], backend=RayBackend(num_workers=1),
    )

    result = fed.fit()

    # a worker that could not unpickle the callback (its module's package __init__ needs torchvision) fails its client
    assert [len(r.updates) for r in result.history] == [2] and not result.history[0].failures
