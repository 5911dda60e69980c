"""What a client fit reports: epoch-level metrics only, and a `sys.exit` inside it as that client's failure."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from callbacks import ArgumentError
from federated import MLP, FedAvg, FederatedTrainer


class StepLogger(MLP):
    """An MLP whose training logs one metric per step only, one per epoch only, and one at both."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        self.log("step_only", float(batch_idx), on_step=True, on_epoch=False)
        self.log("epoch_only", 1.0, on_step=False, on_epoch=True)
        self.log("both", 2.0, on_step=True, on_epoch=True)
        return loss


class ExitingDataset(Dataset):
    """A client's dataset whose third sample calls ``sys.exit(3)``."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index == 2:
            sys.exit(3)
        return torch.zeros(64), torch.tensor(0)


class ExitingStep(MLP):
    """An MLP whose ``training_step`` calls ``sys.exit(3)``."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        sys.exit(3)


class InterruptedStep(MLP):
    """An MLP whose ``training_step`` is interrupted as by Ctrl-C."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        raise KeyboardInterrupt


def test_round_metrics_hold_epoch_level_values_only(digits4: Any) -> None:
    # Prepare
    loaders, _ = digits4
    torch.manual_seed(0)
    fed = FederatedTrainer(StepLogger(hidden=16), loaders[:2], rounds=1, local_epochs=2)
    # Execute
    result = fed.fit()
    # Assert: the step-only metric and the `_step` half of `both` are no round or epoch metric
    assert {"epoch_only", "both", "both_epoch", "train_loss", "lr"} <= set(result.metrics)
    assert "step_only" not in result.metrics and "both_step" not in result.metrics
    for update in result.history[0].updates:
        assert all("step_only" not in m and "both_step" not in m for m in update.epoch_metrics)
        assert update.metrics["both"] == 2.0


@pytest.mark.parametrize("where", ["dataset", "training_step"])
def test_sys_exit_in_a_client_fit_is_that_clients_failure(
    where: str, digits4: Any, make_model: Callable[..., MLP]
) -> None:
    # Prepare: client 1 calls sys.exit(3) in its data or (every client) in its training step
    loaders, _ = digits4
    if where == "dataset":
        model: MLP = make_model()
        data = [loaders[0], DataLoader(ExitingDataset(), batch_size=4)]
        min_clients = 1
    else:
        torch.manual_seed(0)
        model, data, min_clients = ExitingStep(hidden=16), [loaders[0]], 1
    fed = FederatedTrainer(model, data, rounds=1, min_clients=min_clients)
    # Execute / Assert
    if where == "dataset":
        result = fed.fit()
        (failure,) = result.history[0].failures
        assert failure.client_id == 1
        assert failure.error.startswith("SystemExit: 3 (the client's code called sys.exit)")
        assert [u.client_id for u in result.history[0].updates] == [0]
    else:
        with pytest.raises(Exception, match="client 0: SystemExit: 3") as info:
            fed.fit()
        assert not isinstance(info.value, SystemExit)


def test_ctrl_c_in_a_client_fit_still_stops_the_run(digits4: Any) -> None:
    loaders, _ = digits4
    torch.manual_seed(0)
    fed = FederatedTrainer(InterruptedStep(hidden=16), loaders[:2], rounds=2)
    with pytest.raises(KeyboardInterrupt):
        fed.fit()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"trainer_kwargs": {"devices": "auto"}}, r"`trainer_kwargs.devices`: 'auto' takes every device"),
        ({"trainer_kwargs": {"devices": -1}}, r"`trainer_kwargs.devices`: -1 takes every .*\(devices: 1, the default"),
        ({"trainer_kwargs": {"max_steps": 1e30}}, r"`trainer_kwargs.max_steps`: 1e\+30; accepted: an int >= 0, or -1"),
        ({"strategy": FedAvg(local_keys=["*"])}, r"`local_keys`: '\*' match every state-dict name .* aggregated"),
        ({"strategy": FedAvg(local_keys=["net.0.*", "net.2.*"])}, r"`local_keys`: 'net.0.\*', 'net.2.\*' match every"),
    ],
)
def test_client_fit_settings_that_cannot_hold_are_refused_at_construction(
    kwargs: dict[str, Any], match: str, digits4: Any, make_model: Callable[..., MLP]
) -> None:
    loaders, _ = digits4
    with pytest.raises(ArgumentError, match=match):
        FederatedTrainer(make_model(), loaders[:2], rounds=1, **kwargs)
