"""A checkpoint IO wrapper that writes atomically and remembers what it wrote."""

from __future__ import annotations

import os
from typing import Any

from lightning.fabric.plugins import CheckpointIO, TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io.wrapper import _WrappingCheckpointIO
from typing_extensions import override

__all__ = ["RecordingCheckpointIO"]


class RecordingCheckpointIO(_WrappingCheckpointIO):
    """Wraps the strategy's checkpoint IO: local files are written to a temporary name and renamed
    into place (a crash never leaves a half-written file under the final name), and each written
    path is kept in :attr:`written` until the adapter reports it to native callbacks.

    Args:
        checkpoint_io: The IO to wrap. Defaults to ``None`` (Lightning sets its default one).

    Example:
        >>> io = RecordingCheckpointIO(TorchCheckpointIO())
        >>> io.written
        []
    """

    def __init__(self, checkpoint_io: CheckpointIO | None = None) -> None:
        super().__init__(checkpoint_io)
        self.written: list[str] = []

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        inner = self.checkpoint_io
        assert inner is not None
        target = os.fspath(path)
        if type(inner) is TorchCheckpointIO and _is_local_file_protocol(target):
            tmp = f"{target}.tmp"
            inner.save_checkpoint(checkpoint, tmp, storage_options)
            os.replace(tmp, target)
        else:
            inner.save_checkpoint(checkpoint, path, storage_options)
        self.written.append(target)
