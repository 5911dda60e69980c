"""A checkpoint IO wrapper that writes atomically and tells when a file is on disk."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from lightning.fabric.plugins import CheckpointIO, TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import AsyncCheckpointIO
from lightning.pytorch.plugins.io.wrapper import _WrappingCheckpointIO
from typing_extensions import override

from callbacks.files import atomic_write
from lightning_bridge._federation_checkpoint import as_lightning_checkpoint

__all__ = ["RecordingCheckpointIO"]


class RecordingCheckpointIO(_WrappingCheckpointIO):
    """Wraps the strategy's checkpoint IO: local files are written to a temporary name and renamed
    into place (a crash never leaves a half-written file under the final name), and each path is
    recorded as soon as its file is on disk. A federation checkpoint read back (``Trainer.fit(ckpt_path=...)``)
    gives its global weights and hyper-parameters only: the fit starts from them with a fresh optimizer,
    fresh schedulers and fresh loops, and says so in a warning.

    A save handed to Lightning's ``AsyncCheckpointIO`` is written in a background thread: its path
    is recorded when :meth:`wait` (or ``teardown``) has seen it finish.

    Args:
        checkpoint_io: The IO to wrap. Defaults to ``None`` (Lightning sets its default one).

    Attributes:
        written: The paths recorded and not yet taken by the adapter, oldest first.
        on_written: Called, if set, each time paths were added to ``written``.

    Example:
        >>> io = RecordingCheckpointIO(TorchCheckpointIO())
        >>> io.written
        []
    """

    def __init__(self, checkpoint_io: CheckpointIO | None = None) -> None:
        super().__init__(checkpoint_io)
        self.written: list[str] = []
        self.on_written: Callable[[], None] | None = None
        self._in_flight: list[str] = []

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        inner = self.checkpoint_io
        assert inner is not None
        target = os.fspath(path)
        if _background_io(inner) is not None:
            inner.save_checkpoint(checkpoint, path, storage_options)
            self._in_flight.append(target)
            return
        if type(inner) is TorchCheckpointIO and storage_options is None and _is_local_path(target):
            directory = os.path.dirname(target)
            if directory:
                os.makedirs(directory, exist_ok=True)
            with atomic_write(target, "wb") as f:
                torch.save(checkpoint, f)
        else:
            inner.save_checkpoint(checkpoint, path, storage_options)
        self._record([target])

    @override
    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Read ``path`` through the wrapped IO; a federation checkpoint gives its global weights only."""
        return as_lightning_checkpoint(super().load_checkpoint(path, *args, **kwargs), path)

    def wait(self) -> None:
        """Block until the saves running in the background are on disk, and record them.

        Raises:
            BaseException: The error of a failed background save.
        """
        if not self._in_flight:
            return
        in_flight, self._in_flight = self._in_flight, []
        background = _background_io(self.checkpoint_io)
        assert background is not None
        background.teardown()  # waits for its thread; the next save starts a new one
        self._record(in_flight)

    @override
    def teardown(self) -> None:
        self.wait()
        assert self.checkpoint_io is not None
        self.checkpoint_io.teardown()

    def _record(self, paths: list[str]) -> None:
        self.written.extend(paths)
        if self.on_written is not None:
            self.on_written()


def _is_local_path(path: str) -> bool:
    """Whether ``path`` is a plain local file path (not a URL, not even ``file://``)."""
    return _is_local_file_protocol(path) and "://" not in path


def _background_io(io: CheckpointIO | None) -> AsyncCheckpointIO | None:
    """The ``AsyncCheckpointIO`` in the chain of wrapped IOs starting at ``io``, if any."""
    while isinstance(io, _WrappingCheckpointIO):
        if isinstance(io, AsyncCheckpointIO):
            return io
        io = io.checkpoint_io
    return None
