"""Ctrl-C around a federation's fit: Lightning turns one inside a client's fit into ``SystemExit(1)``
and ignores SIGINT from then on; the round loop raises the ``KeyboardInterrupt`` instead and puts the
handler back."""

from __future__ import annotations

import signal
from typing import Any

__all__ = ["ctrl_c", "restore_sigint"]


def ctrl_c(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C behind ``exc`` when it is the ``SystemExit(1)`` Lightning raises for one inside a fit."""
    if isinstance(exc, SystemExit) and isinstance(exc.__context__, KeyboardInterrupt):
        return exc.__context__
    return None


def restore_sigint(handler: Any) -> None:
    """Put ``handler`` back on SIGINT: Lightning ignores Ctrl-C from the first one in a fit on."""
    if handler is not None and signal.getsignal(signal.SIGINT) is not handler:
        signal.signal(signal.SIGINT, handler)
