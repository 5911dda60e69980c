"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["atomic_write"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", **open_args: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit flush it to disk and rename it over ``path``.

    On an error the temporary file is removed and ``path`` is left as it was. A Ctrl-C during the
    write is held until the file is in place, then delivered: ``torch.save`` turns one that lands
    inside its writer into a ``RuntimeError`` and a half-written archive.

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
    with _ctrl_c_held():
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


@contextlib.contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Hold SIGINT in the main thread until the block ends, then raise it again for the handler before."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is None or threading.current_thread() is not threading.main_thread():
        yield  # a handler set outside Python cannot be put back; signals reach the main thread only
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            signal.raise_signal(signal.SIGINT)
