"""A federation checkpoint read by ``Trainer.fit(ckpt_path=...)``: its global weights, a fresh start otherwise."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_warn

__all__ = ["as_lightning_checkpoint"]

_FORMAT_PREFIX = "federated/"
"""How the ``format`` of every federation checkpoint starts (``federated/3``)."""

_MODEL_KEYS = (
    "state_dict",
    "pytorch-lightning_version",
    LightningModule.CHECKPOINT_HYPER_PARAMS_KEY,
    LightningModule.CHECKPOINT_HYPER_PARAMS_NAME,
)
"""What a federation checkpoint holds for Lightning: the global weights and the model's hyper-parameters."""


def as_lightning_checkpoint(checkpoint: dict[str, Any], path: Any) -> dict[str, Any]:
    """``checkpoint`` as Lightning restores it: unchanged, unless it is a federation checkpoint.

    A federation checkpoint holds the global model of a round, not a Lightning fit: it has no
    optimizer, scheduler or loop states, and its callback states are the server callbacks' of the
    round loop. Lightning gets its weights and hyper-parameters only, with empty optimizer and
    scheduler lists, so a fit starts from the federation's model with a fresh optimizer, fresh
    schedulers and fresh loops (epoch 0); a warning says so, once per load.

    Args:
        checkpoint: What the checkpoint IO read.
        path: The file it came from, for the warning.

    Example:
        >>> as_lightning_checkpoint({"state_dict": {}, "epoch": 3}, "last.ckpt")
        {'state_dict': {}, 'epoch': 3}
    """
    federation_format = checkpoint.get("format")
    if not (isinstance(federation_format, str) and federation_format.startswith(_FORMAT_PREFIX)):
        return checkpoint
    rank_zero_warn(
        f"{path} is a federation checkpoint (round {checkpoint.get('round')}): Lightning takes its global weights "
        "and hyper-parameters only; a fit starts from them at epoch 0 with a fresh optimizer, learning-rate "
        "schedulers and loops, and the federation's callback states stay out. HINT: resume the federation itself "
        "with `FederatedTrainer.fit(resume_from=...)`"
    )
    weights = {key: checkpoint[key] for key in _MODEL_KEYS if key in checkpoint}
    return {**weights, "optimizer_states": [], "lr_schedulers": []}
