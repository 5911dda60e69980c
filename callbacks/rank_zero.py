"""Which process writes files: global rank 0 only, read from the trainer at hand."""

from __future__ import annotations

from typing import Any

__all__ = ["NullWriter", "is_global_zero"]


def is_global_zero(trainer: Any) -> bool:
    """Whether this process is global rank 0 (any trainer without ranks counts as rank 0)."""
    return bool(getattr(trainer, "is_global_zero", True))


class NullWriter:
    """A do-nothing stand-in for a writer on ranks other than 0: every method call is ignored.

    Example:
        >>> NullWriter().add_scalar("loss", 0.1, 0) is None
        True
    """

    def __getattr__(self, name: str) -> Any:
        return _ignore


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None
