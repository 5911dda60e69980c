"""Save resumable checkpoints periodically, on a new best, and as ``last``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from callbacks.monitor import Mode, MonitorCallback
from callbacks.registry import register

__all__ = ["ModelCheckpoint"]


@register("callback.model_checkpoint")
class ModelCheckpoint(MonitorCallback):
    """Writes checkpoints through ``trainer.save_checkpoint(path)``.

    Centralised that is a Lightning checkpoint (resume with ``trainer.fit(ckpt_path=...)``), written
    when validation metrics are known (``on_validation_end``; at ``on_epoch_end`` in runs without
    validation). In the federated round loop it is the federation checkpoint, at ``on_round_end``.
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
        ValueError: ``save_every`` < 0, or a bad ``metric``/``mode``.

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
        if save_every < 0:
            raise ValueError(f"`save_every` must be >= 0 (0 disables periodic saves), got {save_every!r}")
        self.save_dir = os.fspath(save_dir)
        self.save_best = save_best
        self.save_every = save_every
        self.save_last = save_last
        self.best_path: str | None = None
        self._saved_epoch: int | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_path": self.best_path}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict["best"]
        self.best_path = state_dict["best_path"]

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

    def on_validation_end(self, trainer: Any, epoch: int, logs: Mapping[str, float], **kwargs: Any) -> None:
        self._save(trainer, "epoch", epoch, logs, "validation logs")
        self._saved_epoch = epoch

    def on_epoch_end(
        self, trainer: Any, epoch: int, logs: Mapping[str, float], round_num: int | None = None, **kwargs: Any
    ) -> None:
        if round_num is None and self._saved_epoch != epoch:
            self._save(trainer, "epoch", epoch, logs, "epoch logs")

    def on_round_end(self, trainer: Any, round_num: int, result: Any, **kwargs: Any) -> None:
        self._save(trainer, "round", round_num, result.metrics, "round metrics")

    def _save(self, trainer: Any, unit: str, index: int, metrics: Mapping[str, float], where: str) -> None:
        is_best = self.save_best and self.improves(self.read(metrics, where))
        for path in self.paths_for(unit, index, is_best):
            trainer.save_checkpoint(path)
            if path.endswith("best.ckpt"):
                self.best_path = path
