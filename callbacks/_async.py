"""Run a coroutine to completion from synchronous code, inside or outside a running event loop."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable
from typing import Any

_local = threading.local()
_background: tuple[asyncio.AbstractEventLoop, threading.Thread] | None = None
_background_lock = threading.Lock()


def run_sync(awaitable: Awaitable[Any]) -> Any:
    """Run ``awaitable`` to completion and return its result.

    With no event loop running in this thread, it runs on a loop private to the thread (kept
    between calls, so async resources opened by one hook stay usable in the next). When a loop is
    already running here (Jupyter, ``asyncio.run(main())`` around a synchronous ``fit``), it cannot
    be re-entered: the awaitable runs on a background loop thread and this thread waits for it.
    ``KeyboardInterrupt`` and ``SystemExit`` are re-raised here, and the background loop survives
    them.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        loop = getattr(_local, "loop", None)
        if loop is None or loop.is_closed():
            loop = _local.loop = asyncio.new_event_loop()
        return loop.run_until_complete(awaitable)
    result, interrupt = asyncio.run_coroutine_threadsafe(_capture(awaitable), _background_loop()).result()
    if interrupt is not None:
        raise interrupt
    return result


async def _capture(awaitable: Awaitable[Any]) -> tuple[Any, BaseException | None]:
    # A KeyboardInterrupt or SystemExit escaping a task stops the loop that runs it: on the
    # background thread that would kill the loop and leave the waiting thread blocked for ever.
    try:
        return await awaitable, None
    except (KeyboardInterrupt, SystemExit) as exc:
        return None, exc


def _background_loop() -> asyncio.AbstractEventLoop:
    global _background
    with _background_lock:
        if _background is None or not _background[1].is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="callbacks-async", daemon=True)
            thread.start()
            _background = (loop, thread)
        return _background[0]


def _forget_after_fork() -> None:
    global _background, _local
    _background = None
    _local = threading.local()


os.register_at_fork(after_in_child=_forget_after_fork)
