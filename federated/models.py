"""A small MLP classifier as a LightningModule, for the digits federation and the tests."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the usual alias
from torchmetrics.classification import MulticlassAccuracy

from callbacks import register
from callbacks.arguments import check_number

__all__ = ["MLP"]


@register("model.mlp")
class MLP(LightningModule):
    """A one-hidden-layer classifier trained with SGD; validation logs ``val_loss`` and ``accuracy``.

    The training step logs nothing: a ``self.log`` costs about a millisecond per fit on a CPU,
    more than a small client's epoch, and the federated loop reports each client's ``train_loss``
    (the mean of its step losses) by itself. ``log_train_loss=True`` logs it per epoch, for
    centralised training.

    Args:
        in_features: Input size. Defaults to ``64`` (8x8 digits).
        hidden: Hidden units. Defaults to ``128``.
        num_classes: Classes. Defaults to ``10``.
        lr: SGD learning rate. Defaults to ``0.1``.
        momentum: SGD momentum. Defaults to ``0.0``.
        weight_decay: SGD weight decay. Defaults to ``0.0``.
        log_train_loss: Log ``train_loss`` (epoch mean) from the training step. Defaults to ``False``.

    Raises:
        ValueError: A size < 1 or ``lr`` <= 0.

    Example:
        >>> model = MLP(hidden=16)
        >>> model(torch.zeros(2, 64)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_features: int = 64,
        hidden: int = 128,
        num_classes: int = 10,
        lr: float = 0.1,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        log_train_loss: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("hidden", hidden), ("num_classes", num_classes)):
            check_number(name, value, low=1, integer=True)
        check_number("lr", lr, low=0, low_open=True)
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
        self.val_accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        if self.hparams["log_train_loss"]:
            self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_accuracy.update(logits, y)
        self.log("val_loss", F.cross_entropy(logits, y), batch_size=len(y))
        self.log("accuracy", self.val_accuracy)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.SGD(self.parameters(), lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
