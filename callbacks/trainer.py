"""The trainer a hook receives, as the built-in callbacks use it: two structural protocols."""

from __future__ import annotations

from typing import Protocol

__all__ = ["FederatedTrainerLike", "TrainerLike"]


class TrainerLike(Protocol):
    """What the built-in callbacks use of the ``trainer`` a hook receives, in both paths.

    ``lightning.Trainer`` (centralised) and ``federated.FederatedTrainer`` (the round loop) both
    have these members, with nothing to inherit: a hook annotated ``trainer: TrainerLike`` runs and
    type-checks in either.

    Attributes:
        should_stop: Set to ``True`` to stop training after the current epoch or round.
        is_global_zero: Whether this process is global rank 0, the one that writes files.

    Example:
        >>> class Loop:
        ...     should_stop = False
        ...     is_global_zero = True
        ...     def save_checkpoint(self, path, weights_only=False):
        ...         print("saved", path)
        >>> def stop_and_save(trainer: TrainerLike) -> None:
        ...     trainer.should_stop = True
        ...     trainer.save_checkpoint("last.ckpt")
        >>> loop = Loop()
        >>> stop_and_save(loop)
        saved last.ckpt
        >>> loop.should_stop
        True
    """

    should_stop: bool

    @property
    def is_global_zero(self) -> bool:
        """Whether this process is global rank 0."""
        ...

    def save_checkpoint(self, path: str, /, weights_only: bool = False) -> object:
        """Write a checkpoint to ``path``: a Lightning checkpoint, or the federation checkpoint."""
        ...


class FederatedTrainerLike(TrainerLike, Protocol):
    """What the built-ins use of the round loop's trainer, ``federated.FederatedTrainer``, besides :class:`TrainerLike`.

    Attributes:
        client_lr_scale: The factor on every client's learning rate in the round about to start
            (``LRScheduler`` sets it at ``on_round_start``).
        current_round: The last round completed; ``0`` before the first.

    Example:
        >>> def halve_client_lr(trainer: FederatedTrainerLike) -> None:
        ...     trainer.client_lr_scale *= 0.5
    """

    client_lr_scale: float
    current_round: int
