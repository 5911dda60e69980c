"""TensorBoard logging with the native hooks, through torch's ``SummaryWriter``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from callbacks.arguments import key_path
from callbacks.callback import Callback
from callbacks.rank_zero import NullWriter, is_global_zero
from callbacks.registry import register
from callbacks.trainer import FederatedTrainerLike, TrainerLike

__all__ = ["TensorBoard"]


@register("callback.tensorboard")
class TensorBoard(Callback):
    """Writes scalars for TensorBoard under ``log_dir`` (global rank 0 only).

    Centralised: the batch loss (``train/batch_loss``, one point per optimizer step) and every
    epoch metric at step ``epoch``. Batch losses stay tensors until the epoch ends and are then
    moved to the host together, so logging adds no device synchronisation per step. In the
    federated round loop: every round metric at step ``round_num``, and each client's training
    metrics as ``client/<id>/<name>`` and its evaluation of the global model (federated evaluation)
    as ``client/<id>/evaluate/<name>``. A resumed federation (``trainer.current_round`` > 0 at
    ``on_train_start``) hides the events of later rounds that a crashed run had written, so each
    round appears once. A resumed centralised fit continues the batch steps after those the
    checkpoint counted, and does not log again the end of the epoch the checkpoint was written in
    (at validation end, say): the run that wrote the checkpoint logged that epoch right after (a run
    killed in between leaves that epoch out, as it does the batch losses it had counted).

    Args:
        log_dir: The directory of the event files. Defaults to ``"./runs"``.

    Example:
        >>> tb = TensorBoard(log_dir="runs/example")
        >>> tb.log_dir
        'runs/example'
    """

    def __init__(self, log_dir: str = "./runs") -> None:
        self.log_dir = os.fspath(log_dir)
        self.writer: Any = None
        self.step = 0
        self._pending: list[torch.Tensor] = []
        self._restored = False
        self._skip_restored_epoch_end = False
        self.state_root: str | None = None  # the folder `log_dir` is keyed relative to (callbacks.arguments.key_path)

    @property
    def state_key(self) -> str:
        """``TensorBoard{'log_dir': ...}``, the folder relative to ``state_root`` if one is set (the CLI's outputs)."""
        return f"TensorBoard{{'log_dir': {key_path(self.state_root, self.log_dir)!r}}}"

    def state_dict(self) -> dict[str, Any]:
        # the batch losses not written yet take the next steps: a resumed run continues after them
        return {"step": self.step + len(self._pending)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.step = state_dict["step"]
        self._restored = True

    def __getstate__(self) -> dict[str, Any]:
        # An open SummaryWriter holds a file and a thread and cannot be pickled or deep-copied:
        # a copy (a client's, a spawned rank's) opens its own at `on_train_start`.
        state = self.__dict__.copy()
        state["writer"] = None
        return state

    def on_train_start(self, trainer: TrainerLike, **kwargs: Any) -> None:
        # a resumed centralised fit (no rounds) may first finish the epoch its checkpoint was written in
        self._skip_restored_epoch_end = self._restored and not hasattr(trainer, "current_round")
        self._restored = False
        if self.writer is None:
            if is_global_zero(trainer):
                from torch.utils.tensorboard import SummaryWriter

                # a resumed federation: hide the rounds after the checkpoint that a crashed run had logged
                resumed = getattr(trainer, "current_round", 0)
                purge_step = resumed + 1 if isinstance(resumed, int) and resumed > 0 else None
                self.writer = SummaryWriter(self.log_dir, purge_step=purge_step)
            else:
                self.writer = NullWriter()

    def on_train_step_end(self, loss: Any, **kwargs: Any) -> None:
        if isinstance(loss, torch.Tensor):
            self._pending.append(loss.detach().float().reshape(()))
        elif loss is not None:
            self._pending.append(torch.tensor(float(loss)))

    def on_epoch_end(
        self, epoch: int, logs: Mapping[str, float], round_num: int | None = None, **kwargs: Any
    ) -> None:
        if round_num is not None:  # a client's epoch in the round loop: the round is the unit
            return
        restored_epoch_end = self._skip_restored_epoch_end and not self._pending  # no batch of it in this fit
        self._skip_restored_epoch_end = False
        if restored_epoch_end:
            return
        self._flush_batches()
        for key, value in logs.items():
            self.writer.add_scalar(key, value, epoch)
        self.writer.flush()

    def on_round_end(self, trainer: FederatedTrainerLike, round_num: int, result: Any, **kwargs: Any) -> None:
        for key, value in result.metrics.items():
            self.writer.add_scalar(key, value, round_num)
        for update in result.updates:
            for key, value in update.metrics.items():
                self.writer.add_scalar(f"client/{update.client_id}/{key}", value, round_num)
        for evaluation in getattr(result, "evaluations", ()):
            for key, value in evaluation.metrics.items():
                self.writer.add_scalar(f"client/{evaluation.client_id}/evaluate/{key}", value, round_num)
        self.writer.flush()

    def on_train_end(self, **kwargs: Any) -> None:
        if self.writer is not None:
            self._flush_batches()
            self.writer.close()
            self.writer = None

    def _flush_batches(self) -> None:
        if not self._pending:
            return
        values = torch.stack([t.to("cpu", non_blocking=True) for t in self._pending]).tolist()
        for value in values:
            self.writer.add_scalar("train/batch_loss", value, self.step)
            self.step += 1
        self._pending.clear()
