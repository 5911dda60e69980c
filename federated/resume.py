"""A ``FederatedTrainer``'s checkpoint: what it holds, where a resume finds it, and the restore from it.

The round loop writes :func:`trainer_checkpoint` after each round (``last.ckpt`` in its
``checkpoint_dir``); :func:`resume_point` reads the checkpoint a resume continues, with its history,
into a :class:`ResumePoint`, and :func:`restore_trainer` puts a trainer back at the end of its round:
weights, strategy, callback and client states, random generators and history.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from federated.checkpoint import (
    callback_states,
    get_rng_states,
    load_callback_states,
    load_checkpoint,
    load_history,
    set_rng_states,
)
from federated.exceptions import CheckpointError
from federated.results import RoundResult

if TYPE_CHECKING:
    from federated.trainer import FederatedTrainer

__all__ = ["LAST", "ResumePoint", "restore_trainer", "resume_point", "trainer_checkpoint"]

log = logging.getLogger("federated.trainer")

LAST = "last.ckpt"
"""The round loop's own checkpoint, in ``checkpoint_dir``, rewritten after every round."""


def trainer_checkpoint(trainer: FederatedTrainer, lightning: Mapping[str, Any]) -> dict[str, Any]:
    """The federation checkpoint of ``trainer`` after its current round.

    ``lightning`` holds the fields that make it a Lightning checkpoint as well (``lightning_fields``).
    """
    return {
        "round": trainer.current_round,
        "weights": trainer.global_weights,
        "strategy": trainer.strategy.state_dict(),
        "callbacks": callback_states(trainer.manager.callbacks),
        "clients": {c.client_id: s for c in trainer.clients if (s := c.state_dict())},
        "rng": get_rng_states(),
        "last_round": trainer.history[-1].to_dict() if trainer.history else None,
        "state_dict": trainer.global_weights,  # the same tensors as "weights": torch.save stores them once
        **lightning,
        "trainer": {
            "should_stop": trainer.should_stop,
            "client_lr_scale": trainer.client_lr_scale,
            "seed": trainer.seed,
            "num_clients": len(trainer.clients),
        },
    }


@dataclass(frozen=True)
class ResumePoint:
    """A federation checkpoint read for a resume: its file, its contents and the records of its rounds.

    A caller that has read the checkpoint already (the CLI, to choose among several) hands this to
    ``FederatedTrainer.fit(resume_from=...)``, which then reads nothing again.

    Args:
        path: The checkpoint file.
        checkpoint: Its contents, as :func:`~federated.checkpoint.load_checkpoint` returns them.
        history: The records of its rounds, as :func:`~federated.checkpoint.load_history` returns them.

    Example:
        >>> point = ResumePoint("last.ckpt", {"round": 0}, [])
        >>> point.round
        0
    """

    path: str
    checkpoint: dict[str, Any]
    history: list[dict[str, Any]]

    @property
    def round(self) -> int:
        """The round the checkpoint was written after."""
        return int(self.checkpoint["round"])

    def in_memory(self) -> ResumePoint:
        """This point with the checkpoint's tensors copied into memory (tensors shared stay shared).

        A checkpoint loaded memory-mapped reads its tensors from the file as they are used: copied,
        it stays valid when the round loop replaces or deletes the file.
        """
        return ResumePoint(self.path, copy.deepcopy(self.checkpoint), self.history)

    @classmethod
    def read(cls, path: str) -> ResumePoint:
        """Read the checkpoint at ``path`` and its history log.

        Raises:
            FileNotFoundError: No file at ``path``.
            CheckpointError: The checkpoint or its history log is damaged, or they do not belong together.
        """
        checkpoint = load_checkpoint(path)
        return cls(path, checkpoint, load_history(path, checkpoint))


def resume_point(
    resume_from: str | os.PathLike[str] | ResumePoint | None, checkpoint_dir: str | None
) -> ResumePoint | None:
    """The checkpoint ``fit(resume_from=...)`` continues from, read; ``None`` starts afresh.

    A :class:`ResumePoint` is taken as it is; a path (a file, or a folder holding ``last.ckpt``)
    and ``"auto"`` (``checkpoint_dir/last.ckpt`` where it exists) are read.

    Raises:
        ValueError: ``"auto"`` without a ``checkpoint_dir``.
        FileNotFoundError: No checkpoint file at the path.
        CheckpointError: The checkpoint or its history log is damaged, or they do not belong together.
    """
    if resume_from is None or isinstance(resume_from, ResumePoint):
        return resume_from
    if os.fspath(resume_from) == "auto":
        if checkpoint_dir is None:
            raise ValueError("`resume_from='auto'` needs `checkpoint_dir`, where the last checkpoint is kept")
        path = os.path.join(checkpoint_dir, LAST)
        return ResumePoint.read(path) if os.path.isfile(path) else None
    path = os.fspath(resume_from)
    return ResumePoint.read(os.path.join(path, LAST) if os.path.isdir(path) else path)


def restore_trainer(trainer: FederatedTrainer, point: ResumePoint) -> dict[str, Any]:
    """Put ``trainer`` back at the end of the round of the checkpoint ``point``; return its global weights.

    Raises:
        CheckpointError: The checkpoint is from a federation of other clients, or its weights do not fit the model.
    """
    path, ckpt = point.path, point.checkpoint
    saved = ckpt["trainer"]
    if saved["num_clients"] != len(trainer.clients):
        raise CheckpointError(
            f"{path!r} is from a federation of {saved['num_clients']} clients, this one has {len(trainer.clients)}"
        )
    if saved["seed"] != trainer.seed:
        log.warning("resuming with seed=%d from a run with seed=%d: not the same run", trainer.seed, saved["seed"])
    try:
        trainer.model.load_state_dict(ckpt["weights"])
    except RuntimeError as exc:
        raise CheckpointError(f"the weights in {path!r} do not fit the model: {exc}") from exc
    trainer.strategy.load_state_dict(ckpt["strategy"])
    load_callback_states(trainer.manager.callbacks, ckpt["callbacks"])
    for client_id, state in ckpt["clients"].items():
        trainer.clients[client_id].load_state_dict(state)
    set_rng_states(ckpt["rng"])
    trainer.history = [RoundResult.from_dict(r) for r in point.history]
    trainer.current_round = ckpt["round"]
    trainer.should_stop = saved["should_stop"]
    trainer.client_lr_scale = saved["client_lr_scale"]
    return dict(ckpt["weights"])
