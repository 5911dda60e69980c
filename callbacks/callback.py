"""The native :class:`Callback` base class and the table of hooks it defines."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Any, TypeAlias

__all__ = ["CONTEXT_ARGUMENTS", "HOOK_ARGUMENTS", "Callback", "HookResult", "stateful_callbacks"]

HookResult: TypeAlias = Awaitable[None] | None
"""What a hook returns: nothing, or an awaitable when it is an ``async def``."""

HOOK_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "on_train_start": ("trainer",),
    "on_epoch_start": ("epoch", "learner", "round_num", "update"),
    "on_batch_start": ("epoch", "batch_idx"),
    "on_train_step_end": ("epoch", "batch_idx", "loss", "metrics"),
    "on_batch_end": ("epoch", "batch_idx"),
    "on_validation_start": ("epoch",),
    "on_validation_end": ("epoch", "logs"),
    "on_save_checkpoint": ("epoch", "round_num", "path"),
    "on_epoch_end": ("epoch", "logs", "learner", "metrics", "round_num", "update"),
    "on_exception": ("exception",),
    "on_train_end": ("trainer", "result"),
    "on_round_start": ("trainer", "round_num"),
    "on_aggregate_start": ("trainer", "updates", "round_num"),
    "on_aggregate_end": ("trainer", "weights", "round_num"),
    "on_round_end": ("trainer", "round_num", "result"),
}
"""Each hook and the arguments its event supplies, in the order of a training run."""

CONTEXT_ARGUMENTS: tuple[str, ...] = ("trainer", "pl_module")
"""Arguments any hook may ask for; ``pl_module`` only where a LightningModule is at hand."""


class Callback:
    """Base class of native callbacks: every hook is a no-op until a subclass overrides it.

    A hook may be a plain ``def`` or an ``async def`` and may ask for any subset of the arguments
    its event supplies (see :data:`HOOK_ARGUMENTS`), by name; ``**kwargs`` receives all of them.
    The hooks here take ``(*args, **kwargs)``, so that an override with any of those parameters,
    annotated or not, type-checks: ``def on_epoch_end(self, epoch, logs)`` and
    ``async def on_round_end(self, trainer, round_num, result, **kwargs)`` alike.
    The same object runs inside a ``lightning.Trainer`` (through
    ``lightning_bridge.LightningCallbackAdapter``) and in the federated round loop.

    Example:
        >>> class PrintLoss(Callback):
        ...     def on_epoch_end(self, epoch, logs):
        ...         print(f"epoch {epoch}: {logs['avg_loss']:.2f}")
        >>> from callbacks import CallbackManager
        >>> CallbackManager([PrintLoss()]).call("on_epoch_end", epoch=0, logs={"avg_loss": 0.5})
        epoch 0: 0.50
    """

    @property
    def state_key(self) -> str:
        """The key under which this callback's state is stored in checkpoints."""
        return type(self).__qualname__

    def state_dict(self) -> dict[str, Any]:
        """Return the state to checkpoint: a small dict of primitives, empty when stateless."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state returned by :meth:`state_dict`."""

    def on_train_start(self, *args: Any, **kwargs: Any) -> HookResult:
        """Called once when training starts, before any other hook.

        Supplies ``trainer``.
        """
        return None

    def on_epoch_start(self, *args: Any, **kwargs: Any) -> HookResult:
        """Called when a training epoch (or a client's local epoch) begins.

        Supplies ``epoch``, ``learner``, ``round_num``, ``update`` (the client's ``ClientUpdate``, in the round loop).
        """
        return None

    def on_batch_start(self, *args: Any, **kwargs: Any) -> HookResult:
        """Called before a training batch.

        Supplies ``epoch``, ``batch_idx``.
        """
        return None

    def on_train_step_end(self, *args: Any, **kwargs: Any) -> HookResult:
        """Called after the optimizer step of a batch; ``loss`` is a detached tensor.

        Supplies ``epoch``, ``batch_idx``, ``loss``, ``metrics``.
        """
        return None

    def on_batch_end(self, *args: Any, **kwargs: Any) -> HookResult:
        """Called after all processing of a training batch.

        Supplies ``epoch``, ``batch_idx``.
        """
        return None

    def on_validation_start(self, *args: Any, **kwargs: Any) -> HookResult:
        """Called when a validation run begins (never for a sanity check).

        Supplies ``epoch``.
        """
        return None

    def on_validation_end(self, *args: Any, **kwargs: Any) -> HookResult:
        """Called when validation metrics are known, e.g. ``logs == {'val_loss': 0.12}``.

        Supplies ``epoch``, ``logs``.
        """
        return None

    def on_save_checkpoint(self, *args: Any, **kwargs: Any) -> HookResult:
        """Called after a checkpoint file has been written.

        Supplies epoch or round_num, ``path``.
        """
        return None

    def on_epoch_end(self, *args: Any, **kwargs: Any) -> HookResult:
        """Called after training and validation of an epoch: the last hook of the epoch.

        Supplies ``epoch``, ``logs``, ``learner``, ``metrics``, ``round_num``, ``update`` (in the round loop).
        """
        return None

    def on_exception(self, *args: Any, **kwargs: Any) -> HookResult:
        """Called when training raised.

        Supplies ``exception``.
        """
        return None

    def on_train_end(self, *args: Any, **kwargs: Any) -> HookResult:
        """Called exactly once when training ends, last, also after an exception or a stop.

        Supplies ``trainer``, ``result``.
        """
        return None

    def on_round_start(self, *args: Any, **kwargs: Any) -> HookResult:
        """Called when a federated round begins; rounds count from 1.

        Supplies ``trainer``, ``round_num``.
        """
        return None

    def on_aggregate_start(self, *args: Any, **kwargs: Any) -> HookResult:
        """Called when the clients' updates are in, before aggregation.

        Supplies ``trainer``, ``updates``, ``round_num``.
        """
        return None

    def on_aggregate_end(self, *args: Any, **kwargs: Any) -> HookResult:
        """Called when the new global weights are computed.

        Supplies ``trainer``, ``weights``, ``round_num``.
        """
        return None

    def on_round_end(self, *args: Any, **kwargs: Any) -> HookResult:
        """Called after aggregation and global evaluation of a round.

        Supplies ``trainer``, ``round_num``, ``result``.
        """
        return None


def stateful_callbacks(callbacks: Iterable[Any]) -> dict[str, Any]:
    """The callbacks that define their own ``state_dict``, by ``state_key``: where checkpoints put their states.

    Raises:
        ValueError: Two of them share a ``state_key`` (their states would overwrite each other).

    Example:
        >>> class Counter(Callback):
        ...     def state_dict(self):
        ...         return {"n": 0}
        >>> list(stateful_callbacks([Counter(), Callback()]))
        ['Counter']
    """
    out: dict[str, Any] = {}
    for callback in callbacks:
        method = getattr(type(callback), "state_dict", None)
        if not callable(method) or method is Callback.state_dict:
            continue
        key = getattr(callback, "state_key", type(callback).__qualname__)
        if key in out:
            raise ValueError(
                f"two callbacks share the state key {key!r}; give one a distinct `state_key` so their "
                "checkpointed states do not overwrite each other"
            )
        out[key] = callback
    return out
