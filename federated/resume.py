"""A ``FederatedTrainer``'s checkpoint: what it holds, where a resume finds it, and the restore from it.

The round loop writes :func:`trainer_checkpoint` after each round (``last.ckpt`` in its
``checkpoint_dir``) and :func:`restore_trainer` puts a trainer back at the end of the checkpoint's
round: weights, strategy, callback and client states, random generators and history.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
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

__all__ = ["LAST", "restore_trainer", "resume_path", "trainer_checkpoint"]

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


def resume_path(resume_from: str | os.PathLike[str] | None, checkpoint_dir: str | None) -> str | None:
    """The checkpoint file ``fit(resume_from=...)`` continues from; ``None`` starts afresh.

    Raises:
        ValueError: ``"auto"`` without a ``checkpoint_dir``.
    """
    if resume_from is None:
        return None
    if os.fspath(resume_from) == "auto":
        if checkpoint_dir is None:
            raise ValueError("`resume_from='auto'` needs `checkpoint_dir`, where the last checkpoint is kept")
        path = os.path.join(checkpoint_dir, LAST)
        return path if os.path.isfile(path) else None
    path = os.fspath(resume_from)
    return os.path.join(path, LAST) if os.path.isdir(path) else path


def restore_trainer(trainer: FederatedTrainer, path: str) -> dict[str, Any]:
    """Put ``trainer`` back at the end of the round of the checkpoint at ``path``; return its global weights.

    Raises:
        CheckpointError: The checkpoint is from a federation of other clients, or its weights do not fit the model.
    """
    ckpt = load_checkpoint(path)
    history = load_history(path, ckpt)
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
    trainer.history = [RoundResult.from_dict(r) for r in history]
    trainer.current_round = ckpt["round"]
    trainer.should_stop = saved["should_stop"]
    trainer.client_lr_scale = saved["client_lr_scale"]
    return dict(ckpt["weights"])
