"""A federation small enough to replay by hand: a linear classifier on fixed, unshuffled client data."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

LR = 0.1


class Linear(LightningModule):
    """Softmax regression trained with plain SGD: nothing random once its weights are set."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 3)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=LR)


def client_tensors(num_clients: int, sizes: list[int] | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Features and labels of each client, each with its own skew (client drift for SCAFFOLD to correct)."""
    generator = torch.Generator().manual_seed(0)
    out = []
    for i in range(num_clients):
        n = sizes[i] if sizes else 24
        x = torch.randn(n, 4, generator=generator) + i
        y = (torch.arange(n) + i) % 3 if i % 2 else torch.full((n,), i % 3)
        out.append((x, y))
    return out


def loaders(tensors: list[tuple[torch.Tensor, torch.Tensor]], batch_size: int = 8) -> list[DataLoader]:
    return [DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False) for x, y in tensors]


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]


def model(seed: int = 0) -> Linear:
    torch.manual_seed(seed)
    return Linear()


def loss_grads(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """The gradients of the mean cross-entropy of ``x @ W.T + b`` at ``params``."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    loss = nn.functional.cross_entropy(x @ leaves["layer.weight"].T + leaves["layer.bias"], y)
    loss.backward()
    return {k: v.grad for k, v in leaves.items()}  # type: ignore[misc]
