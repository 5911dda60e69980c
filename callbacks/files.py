"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["atomic_write"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", **open_args: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit flush it to disk and rename it over ``path``.

    On an error the temporary file is removed and ``path`` is left as it was.

    Args:
        path: The file to write.
        mode: ``"w"`` for text or ``"wb"`` for bytes. Defaults to ``"w"``.
        **open_args: Further arguments of :func:`open`, e.g. ``newline=""``.

    Example:
        >>> import tempfile
        >>> target = os.path.join(tempfile.mkdtemp(), "notes.txt")
        >>> with atomic_write(target) as f:
        ...     _ = f.write("round 1")
        >>> open(target).read()
        'round 1'
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"`mode` must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, mode, **open_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
