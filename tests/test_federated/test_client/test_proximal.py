"""ProximalTerm, FedProx's client algorithm: the gradient term in a real fit (also under AMP), and its effect."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.plugins import MixedPrecision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from federated import MLP, Client, ClientRunner, ClientUpdate
from federated.client import ProximalTerm
from federated.messages import FitTask

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


@pytest.mark.parametrize(
    ("precision", "fused"), [("32", False), ("16-mixed", False), ("16-mixed", True)], ids=["fp32", "amp", "amp-fused"]
)
def test_proximal_term_adds_mu_times_distance_to_the_fit_start(precision: str, fused: bool) -> None:
    # Execute: two SGD steps (lr 0.1) from w0 = [1, 2, 3] with gradient [2, 2, 2]; the anchor is w0, where the
    # fit started, so the term is zero at the first step and shows at the second
    model = ThreeWeights(fused=fused)
    plugins = []
    if precision == "16-mixed":  # fp16 autocast with a real GradScaler, on the CPU
        plugins = [MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))]
    trainer = Trainer(max_steps=2, plugins=plugins, callbacks=[ProximalTerm(mu=0.5)], **QUIET)
    trainer.fit(model, DataLoader(TensorDataset(torch.ones(4, 3)), batch_size=2))

    # Assert: step 1 is plain SGD (w1 = w0 - 0.2); step 2 adds 0.5 * (w1 - w0) = -0.1 to the gradient
    start = torch.tensor([1.0, 2.0, 3.0])
    first = start - 0.1 * 2
    expected = first - 0.1 * (2 + 0.5 * (first - start))
    torch.testing.assert_close(model.layer.weight.detach()[0], expected)


@pytest.mark.filterwarnings("ignore:.*no `val_dataloader`")
def test_proximal_term_client_drift_shrinks_with_mu(
    digits4: tuple[list[DataLoader], DataLoader], make_model: Callable[..., MLP]
) -> None:
    # Prepare: one real client fit (3 local epochs) from the same global weights, mu = 0, 0.1 and 1
    loaders, _ = digits4
    model = make_model(lr=0.3)
    client = Client(0, loaders[0])
    weights = {name: t.detach().clone() for name, t in model.state_dict().items()}

    def drift(mu: float) -> float:
        runner = ClientRunner(model, local_epochs=3, trainer_kwargs=QUIET, algorithms=[ProximalTerm(mu)])
        outcome = runner.fit(client, FitTask(client_id=0, round_num=1, seed=0, weights=weights))
        assert isinstance(outcome, ClientUpdate), outcome
        return math.sqrt(sum(float(((outcome.weights[k] - weights[k]) ** 2).sum()) for k in weights))

    # Execute
    drifts = [drift(0.0), drift(0.1), drift(1.0)]

    # Assert: the larger mu, the closer the client stays to the global weights
    assert drifts[0] > drifts[1] > drifts[2], drifts
    assert drifts[2] < 0.5 * drifts[0], drifts
