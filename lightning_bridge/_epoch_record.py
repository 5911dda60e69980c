"""What the adapter keeps of the epoch in progress, and what of it a checkpoint carries to a resumed fit."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from lightning_bridge.metrics import StepLosses


class EpochRecord:
    """The epoch in progress: its number, step losses, validation logs, epoch logs, and how far its end hooks got.

    A checkpoint written while the epoch is ending holds :meth:`state_dict`; the resumed fit takes it
    up with :meth:`from_state_dict` and runs the end hooks that were still due.

    Attributes:
        epoch: The epoch whose native ``on_epoch_end`` is still due; ``None`` between epochs.
        last_epoch: The latest epoch begun: the one checkpoints written now belong to.
        stage: The end hook being dispatched and the index of the callback it is at, if any.
        losses: The step losses of this fit's part of the epoch.
        logs: The epoch logs, once collected.

    Example:
        >>> record = EpochRecord()
        >>> record.begin(0)
        >>> _ = record.losses.add(torch.tensor(0.5))
        >>> record.validated({"val_loss": 0.25, "acc": 0.9}, fresh=["val_loss"])
        >>> record.train_logs({"val_loss": 0.3, "train_acc": 0.8})
        {'train_acc': 0.8, 'val_loss': 0.25}
        >>> resumed = EpochRecord.from_state_dict(record.state_dict(callbacks=2))
        >>> resumed.epoch, resumed.loss_total()
        (0, (0.5, 1))
    """

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.last_epoch: int | None = None
        self.stage: tuple[str, int] | None = None
        self.losses = StepLosses()
        self.logs: dict[str, float] | None = None
        self.val_end_logs: dict[str, float] = {}  # the logs on_validation_end received
        self._loss_carry = (0.0, 0)  # loss sum and count of the epoch before the checkpoint it resumed from
        self._val_keys: set[str] = set()  # metrics any validation of this fit reported
        self._val_logs: dict[str, float] = {}  # those this epoch's validation reported
        self._before_val: dict[str, Any] = {}

    def begin(self, epoch: int) -> None:
        """Start recording ``epoch``."""
        self.epoch, self.last_epoch, self.stage, self.logs = epoch, epoch, None, None
        self.losses, self._loss_carry = StepLosses(), (0.0, 0)
        self._val_logs, self.val_end_logs = {}, {}

    def end(self) -> None:
        """The epoch's native end hooks have all run."""
        self.epoch, self.stage = None, None

    def validation_starts(self, metrics: Mapping[str, Any]) -> None:
        """Note the trainer's metrics before validation, to tell which ones it reports."""
        self._before_val = dict(metrics)

    def fresh(self, metrics: Mapping[str, Any]) -> list[str]:
        """The metrics validation reported: Lightning keeps old values, the new ones are new objects."""
        return sorted(k for k, v in metrics.items() if self._before_val.get(k) is not v)

    def validated(self, logs: dict[str, float], fresh: Iterable[str]) -> None:
        """Keep what validation reported (``fresh``, out of ``logs``) and the ``logs`` it ended with.

        ``logs`` is kept as it is, the dict ``on_validation_end`` receives: a checkpoint written by one
        of those hooks holds what an earlier one added, as the next hooks see it.
        """
        fresh = list(fresh)
        self._val_keys.update(fresh)
        self._val_logs = {k: logs[k] for k in fresh if k in logs}
        self.val_end_logs = logs

    def train_logs(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """``metrics`` with validation's values of this epoch only (none from an earlier validation)."""
        logs = {k: v for k, v in metrics.items() if k not in self._val_keys}
        logs.update(self._val_logs)
        return logs

    def loss_total(self) -> tuple[torch.Tensor | float, int]:
        """The sum (on the losses' device, if any was added in this fit) and the count of the epoch's step losses."""
        carry_sum, carry_count = self._loss_carry
        total = carry_sum if self.losses.total is None else self.losses.total + carry_sum
        return total, self.losses.count + carry_count

    def resume_index(self, hook: str) -> int:
        """The callback ``hook`` is to be dispatched from: where a resumed dispatch of it left off, else 0."""
        return self.stage[1] if self.stage is not None and self.stage[0] == hook else 0

    def state_dict(self, callbacks: int) -> dict[str, Any]:
        """What a resumed fit needs to finish the epoch, for a checkpoint written now.

        The callback being dispatched wrote the checkpoint: its hook counts as run (of ``callbacks`` in all).
        """
        stage = None if self.stage is None else [self.stage[0], min(self.stage[1] + 1, callbacks)]
        loss_sum = float(self.losses.total) if self.losses.total is not None else 0.0
        return {
            "epoch": self.epoch,
            "stage": stage,
            "loss_sum": loss_sum + self._loss_carry[0],
            "loss_count": self.losses.count + self._loss_carry[1],
            "val_keys": sorted(self._val_keys),
            "val_logs": dict(self._val_logs),
            "val_end_logs": dict(self.val_end_logs),
            "epoch_logs": dict(self.logs) if self.logs is not None else None,
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> EpochRecord:
        """The record of the epoch a checkpoint was written in, from its :meth:`state_dict`."""
        record = cls()
        record.epoch = record.last_epoch = int(state["epoch"])
        record._loss_carry = (float(state["loss_sum"]), int(state["loss_count"]))
        record._val_keys = set(state["val_keys"])
        record._val_logs = dict(state["val_logs"])
        record.val_end_logs = dict(state["val_end_logs"])
        if state["epoch_logs"] is not None:
            record.logs = dict(state["epoch_logs"])
        if state["stage"] is not None:
            hook, done = state["stage"]
            record.stage = (hook, int(done))
        return record
