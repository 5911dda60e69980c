"""FedProx: the proximal gradient term in a real Lightning fit (also under AMP), and its effect on client drift."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback as LightningCallback
from lightning.pytorch.plugins import MixedPrecision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from federated import MLP, Client, ClientRunner, ClientUpdate, FederatedTrainer
from federated.strategies.fedavg import FedAvg
from federated.strategies.fedprox import FedProx

QUIET: dict[str, Any] = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


class ThreeWeights(LightningModule):
    """``loss = sum(x @ w)``: with ``x`` two rows of ones, the gradient of ``w`` is ``[2, 2, 2]``."""

    def __init__(self, fused: bool = False) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 1, bias=False)
        with torch.no_grad():
            self.layer.weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
        self.fused = fused

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1, fused=self.fused or None)


class CountFits(LightningCallback):
    """Counts the fits it is part of."""

    def __init__(self) -> None:
        self.fits = 0

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.fits += 1


class CountingFedAvg(FedAvg):
    """FedAvg that hands every client fit a :class:`CountFits`."""

    def __init__(self) -> None:
        super().__init__()
        self.counter = CountFits()

    def client_callbacks(self, weights: Any) -> list[LightningCallback]:
        return [self.counter]


def _one_step(precision: str, mu: float, fused: bool = False) -> torch.Tensor:
    model = ThreeWeights(fused=fused)
    loader = DataLoader(TensorDataset(torch.ones(2, 3)), batch_size=2)
    anchor = {"layer.weight": torch.zeros(1, 3)}  # the "global" weights: the term is mu * w
    plugins = []
    if precision == "16-mixed":  # fp16 autocast with a real GradScaler, on the CPU
        plugins = [MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))]
    trainer = Trainer(max_steps=1, plugins=plugins, callbacks=FedProx(mu=mu).client_callbacks(anchor), **QUIET)
    trainer.fit(model, loader)
    return model.layer.weight.detach()[0]


@pytest.mark.parametrize(
    ("precision", "fused"), [("32", False), ("16-mixed", False), ("16-mixed", True)], ids=["fp32", "amp", "amp-fused"]
)
def test_fedprox_adds_mu_times_distance_to_the_gradient(precision: str, fused: bool) -> None:
    # Execute: one SGD step (lr 0.1) from w = [1, 2, 3] with gradient [2, 2, 2] and the anchor at 0
    stepped = _one_step(precision, mu=0.5, fused=fused)

    # Assert: w - 0.1 * (2 + 0.5 * (w - 0)), unscaled whether the scaler unscales before the hook or in `step`
    expected = torch.tensor([1.0 - 0.1 * (2 + 0.5 * 1.0), 2.0 - 0.1 * (2 + 0.5 * 2.0), 3.0 - 0.1 * (2 + 0.5 * 3.0)])
    torch.testing.assert_close(stepped, expected)


def test_fedprox_mu_zero_is_fedavg() -> None:
    assert FedProx(mu=0.0).client_callbacks({"w": torch.zeros(1)}) == []


@pytest.mark.filterwarnings("ignore:.*no `val_dataloader`")
def test_fedprox_client_drift_shrinks_with_mu(digits5: tuple[list[DataLoader], DataLoader]) -> None:
    # Prepare: one real client fit (3 local epochs) from the same global weights, mu = 0 and mu = 1
    loaders, _ = digits5
    torch.manual_seed(0)
    model = MLP(hidden=16, lr=0.3)
    runner = ClientRunner(model, local_epochs=3, trainer_kwargs=QUIET)
    client = Client(0, loaders[0])
    weights = {name: t.detach().clone() for name, t in model.state_dict().items()}

    def drift(mu: float) -> float:
        outcome = runner.fit(client, weights, round_num=1, seed=0, callbacks=FedProx(mu=mu).client_callbacks(weights))
        assert isinstance(outcome, ClientUpdate), outcome
        return math.sqrt(sum(float(((outcome.weights[k] - weights[k]) ** 2).sum()) for k in weights))

    # Execute
    drifts = [drift(0.0), drift(0.1), drift(1.0)]

    # Assert: the larger mu, the closer the client stays to the global weights (about 2.2, 1.5, 0.25)
    assert drifts[0] > drifts[1] > drifts[2], drifts
    assert drifts[2] < 0.5 * drifts[0], drifts


def test_federated_trainer_hands_strategy_callbacks_to_every_client_fit(
    digits5: tuple[list[DataLoader], DataLoader],
) -> None:
    loaders, _ = digits5
    strategy = CountingFedAvg()
    fed = FederatedTrainer(MLP(hidden=8), loaders[:3], rounds=2, strategy=strategy, seed=0)

    fed.fit()

    assert strategy.counter.fits == 2 * 3


def test_fedprox_rejects_a_negative_mu() -> None:
    with pytest.raises(ValueError, match=r"`mu`: must be a number in \[0, inf\), got -0.1; 0 is FedAvg"):
        FedProx(mu=-0.1)
