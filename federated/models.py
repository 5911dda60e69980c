"""A small MLP classifier as a LightningModule, for the digits federation and the tests."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar

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

    The state-dict names are ``net.0.weight``, ``net.0.bias`` (the hidden layer) and ``net.2.weight``,
    ``net.2.bias`` (the output layer). ``batch_norm=True`` adds a ``BatchNorm1d`` after the hidden
    layer, before the ReLU, under ``net.bn``: ``net.bn.weight``, ``net.bn.bias``, ``net.bn.running_mean``,
    ``net.bn.running_var`` and ``net.bn.num_batches_tracked``, the names ``local_keys=["*bn*"]`` matches
    (FedBN); the two linear layers keep their names. A training batch of a single sample, which
    ``BatchNorm1d`` cannot take the statistics of, is normalised with the running statistics instead.

    Args:
        in_features: Input size. Defaults to ``64`` (8x8 digits).
        hidden: Hidden units. Defaults to ``128``.
        num_classes: Classes. Defaults to ``10``.
        lr: SGD learning rate. Defaults to ``0.1``.
        momentum: SGD momentum. Defaults to ``0.0``.
        weight_decay: SGD weight decay. Defaults to ``0.0``.
        log_train_loss: Log ``train_loss`` (epoch mean) from the training step. Defaults to ``False``.
        batch_norm: Normalise the hidden layer with a ``BatchNorm1d`` (``net.bn``). Defaults to ``False``.

    Raises:
        ValueError: A size < 1 or ``lr`` <= 0.

    Example:
        >>> model = MLP(hidden=16)
        >>> model(torch.zeros(2, 64)).shape
        torch.Size([2, 10])
        >>> [name for name in MLP(hidden=16, batch_norm=True).state_dict() if "bn" in name]
        ['net.bn.weight', 'net.bn.bias', 'net.bn.running_mean', 'net.bn.running_var', 'net.bn.num_batches_tracked']
    """

    training_metrics: ClassVar[tuple[str, ...]] = ()
    """What ``training_step`` logs beyond ``train_loss``, which the round loop reports of every fit."""
    validation_metrics: ClassVar[tuple[str, ...]] = ("val_loss", "accuracy")
    """What ``validation_step`` logs: a YAML run refuses a callback watching a metric no round reports."""

    def __init__(
        self,
        in_features: int = 64,
        hidden: int = 128,
        num_classes: int = 10,
        lr: float = 0.1,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        log_train_loss: bool = False,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("hidden", hidden), ("num_classes", num_classes)):
            check_number(name, value, low=1, integer=True)
        check_number("lr", lr, low=0, low_open=True)
        self.save_hyperparameters()
        hidden_layer, output_layer = nn.Linear(in_features, hidden), nn.Linear(hidden, num_classes)
        if batch_norm:
            layers = [("0", hidden_layer), ("bn", _BatchNorm1d(hidden)), ("1", nn.ReLU()), ("2", output_layer)]
            self.net = nn.Sequential(OrderedDict(layers))
        else:
            self.net = nn.Sequential(hidden_layer, nn.ReLU(), output_layer)
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


class _BatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` that normalises a training batch of one sample with its running statistics.

    PyTorch refuses such a batch, and a client's last batch is one sample whenever its size leaves
    a remainder of one; the running statistics are left as they are for it.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)
