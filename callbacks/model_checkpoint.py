"""Save resumable checkpoints periodically, on a new best, and as ``last``."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from callbacks.arguments import check_number, key_path
from callbacks.monitor import Mode, MonitorCallback
from callbacks.registry import register
from callbacks.trainer import FederatedTrainerLike, TrainerLike

__all__ = ["ModelCheckpoint"]

log = logging.getLogger(__name__)


@register("callback.model_checkpoint")
class ModelCheckpoint(MonitorCallback):
    """Writes checkpoints through ``trainer.save_checkpoint(path, weights_only=False)``.

    Centralised that is a Lightning checkpoint (resume with ``trainer.fit(ckpt_path=...)``), written
    once per epoch as soon as ``metric`` is known: at ``on_validation_end`` when validation reports
    it, else at ``on_epoch_end`` (``avg_loss`` and training metrics; epochs without validation). An
    epoch whose logs lack ``metric`` still gets its periodic and ``last`` files, only no best
    decision; a run that never reported ``metric`` says so in a warning when it ends. In the
    federated round loop it is the federation checkpoint, at ``on_round_end``.
    Files: ``epoch=0004.ckpt`` / ``round=0004.ckpt`` every ``save_every`` epochs/rounds,
    ``best.ckpt`` on a new best of ``metric``, and ``last.ckpt`` each time. The trainer writes
    atomically (temporary file, then rename) and fires ``on_save_checkpoint`` after each write.

    Args:
        save_dir: The directory of the files. Defaults to ``"./checkpoints"``.
        save_best: Whether to keep ``best.ckpt``. Defaults to ``True``.
        save_every: Period in epochs (centralised) or rounds (federated); 0 disables. Defaults to ``10``.
        metric: The metric deciding the best checkpoint. Defaults to ``"accuracy"``.
        mode: ``"max"`` if larger is better, ``"min"`` if smaller is. Defaults to ``"max"``.
        save_last: Whether to keep ``last.ckpt``. Defaults to ``True``.

    Raises:
        ArgumentError: ``save_every`` is not an int >= 0.
        ValueError: A bad ``metric`` or ``mode``.

    Example:
        >>> ckpt = ModelCheckpoint(save_dir="ckpts", metric="val_loss", mode="min", save_every=5)
        >>> ckpt.paths_for("epoch", 4, is_best=True)
        ['ckpts/epoch=0004.ckpt', 'ckpts/best.ckpt', 'ckpts/last.ckpt']
    """

    def __init__(
        self,
        save_dir: str = "./checkpoints",
        save_best: bool = True,
        save_every: int = 10,
        metric: str = "accuracy",
        mode: Mode = "max",
        save_last: bool = True,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        check_number("save_every", save_every, low=0, integer=True, hint="0 disables periodic saves")
        self.save_dir = os.fspath(save_dir)
        self.save_best = save_best
        self.save_every = save_every
        self.save_last = save_last
        self.best_path: str | None = None
        self.state_root: str | None = None  # the folder `best_path` is kept relative to (callbacks.arguments.key_path)
        self._saved_epoch: int | None = None
        self._unseen_in: list[str] | None = None  # the epoch logs that lacked `metric`, if any did

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {**super().state_dict(), "best_path": key_path(self.state_root, self.best_path)}
        if self._saved_epoch is not None:  # centralised: a resumed epoch end must not write again
            state["saved_epoch"] = self._saved_epoch
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        best = state_dict["best_path"]
        self.best_path = os.path.join(self.state_root, best) if self.state_root and best else best
        self._saved_epoch = state_dict.get("saved_epoch")

    def on_train_start(self, **kwargs: Any) -> None:
        if not self._restored:  # a new fit counts epochs from 0 again; a resumed one keeps its place
            self._saved_epoch = None
        self._restored = False
        self._unseen_in = None

    def paths_for(self, unit: str, index: int, is_best: bool) -> list[str]:
        """The files to write for epoch or round ``index``: periodic, best, last (in that order)."""
        count = index + 1 if unit == "epoch" else index
        paths = []
        if self.save_every and count % self.save_every == 0:
            paths.append(os.path.join(self.save_dir, f"{unit}={index:04d}.ckpt"))
        if is_best:
            paths.append(os.path.join(self.save_dir, "best.ckpt"))
        if self.save_last:
            paths.append(os.path.join(self.save_dir, "last.ckpt"))
        return paths

    def on_validation_end(self, trainer: TrainerLike, epoch: int, logs: Mapping[str, float], **kwargs: Any) -> None:
        if self.metric in logs or not self.save_best:  # else wait for the epoch logs
            self._saved_epoch = epoch
            self._save(trainer, "epoch", epoch, logs, "validation logs")

    def on_epoch_end(
        self, trainer: TrainerLike, epoch: int, logs: Mapping[str, float], round_num: int | None = None, **kwargs: Any
    ) -> None:
        if round_num is not None or self._saved_epoch == epoch:
            return
        self._saved_epoch = epoch
        if self.save_best and self.metric not in logs:  # e.g. an epoch without validation
            self._unseen_in = sorted(logs)
            self._write(trainer, self.paths_for("epoch", epoch, is_best=False))
            return
        self._save(trainer, "epoch", epoch, logs, "epoch logs")

    def on_train_end(self, **kwargs: Any) -> None:
        if self._unseen_in is not None and self.best is None:
            log.warning(
                "ModelCheckpoint watches `%s`, which this run never reported, so no best checkpoint was "
                "written; the epoch logs had: %s. HINT: log it, or set `metric` to one of those",
                self.metric,
                ", ".join(self._unseen_in) or "nothing",
            )
        self._unseen_in = None

    def on_round_end(self, trainer: FederatedTrainerLike, round_num: int, result: Any, **kwargs: Any) -> None:
        self._save(trainer, "round", round_num, result.metrics, "round metrics")

    def _save(self, trainer: TrainerLike, unit: str, index: int, metrics: Mapping[str, float], where: str) -> None:
        is_best = self.save_best and self.improves(self.read(metrics, where))
        self._write(trainer, self.paths_for(unit, index, is_best))

    def _write(self, trainer: TrainerLike, paths: list[str]) -> None:
        for path in paths:
            if os.path.basename(path) == "best.ckpt":
                self.best_path = path  # before the write, so that the file's own state names itself
            trainer.save_checkpoint(path, weights_only=False)
