"""``fit(ckpt_path="last")`` also finds the ``last.ckpt`` that a native ``ModelCheckpoint`` keeps.

Lightning resolves ``"last"`` from its own checkpoint callbacks only (``ModelCheckpoint``'s folder,
``OnExceptionCheckpoint``'s file), when ``fit`` is called, before any callback hook runs; with the
native ``ModelCheckpoint`` in a :class:`~lightning_bridge.LightningCallbackAdapter` and
``enable_checkpointing=False`` it would find nothing and train from scratch. :func:`install` widens
the look-up: every callback of the trainer with a ``last_checkpoints()`` method (the adapter) adds
its files, and the newest of all candidates wins, as among Lightning's own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from lightning.pytorch.trainer.connectors.checkpoint_connector import _CheckpointConnector

__all__ = ["install"]


def install() -> None:
    """Make Lightning's checkpoint connector resolve ``"last"`` with the adapters' files too (once)."""
    parse = _CheckpointConnector._parse_ckpt_path
    if getattr(parse, "_with_native_last", False):
        return
    wrapped = _with_native_last(parse)
    wrapped._with_native_last = True  # type: ignore[attr-defined]
    _CheckpointConnector._parse_ckpt_path = wrapped  # type: ignore[method-assign]


def _with_native_last(parse: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(parse)
    def parse_ckpt_path(self: _CheckpointConnector, state_fn: Any, ckpt_path: Any, *args: Any, **kwargs: Any) -> Any:
        if ckpt_path != "last":
            return parse(self, state_fn, ckpt_path, *args, **kwargs)
        callbacks: list[Any] = self.trainer.callbacks  # type: ignore[attr-defined]  # set by the callback connector
        native = [path for cb in callbacks if hasattr(cb, "last_checkpoints") for path in cb.last_checkpoints()]
        if not native:  # Lightning's own look-up, and its warning when it finds nothing
            return parse(self, state_fn, ckpt_path, *args, **kwargs)
        candidates = {*native, *_lightning_last_checkpoints(self.trainer)}
        return max(candidates, key=lambda path: get_filesystem(path).modified(path))

    return parse_ckpt_path


def _lightning_last_checkpoints(trainer: Any) -> set[str]:
    """The files Lightning's own ``"last"`` look-up chooses from (its checkpoint connector's candidates)."""
    found: set[str] = set()
    for callback in trainer.callbacks:
        if isinstance(callback, OnExceptionCheckpoint):
            found.add(callback.ckpt_path)
        elif isinstance(callback, ModelCheckpoint):
            found |= callback._find_last_checkpoints(trainer)
    return {path for path in found if path and get_filesystem(path).exists(path)}
