"""Per-hook dispatch cost of :class:`callbacks.CallbackManager`, next to calling the methods directly.

Both sides run in this process on the same callback objects; each figure is the median of several
``timeit`` repeats, per hook call (all callbacks) and per callback-call. Targets: under 2 µs per
overridden sync hook and callback, about nothing for a hook nobody overrides.

Run with ``make bench`` or ``python benchmarks/dispatch.py [--callbacks 5] [--repeat 7]``.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import timeit
from collections.abc import Callable
from dataclasses import dataclass

import torch

from callbacks import Callback, CallbackManager

TARGET_SYNC_US = 2.0


class SyncNoop(Callback):
    def on_batch_end(self, epoch, batch_idx):  # a seed-000 signature
        pass


class KwargsNoop(Callback):
    def on_batch_end(self, epoch, batch_idx, **kwargs):  # a seed-003 signature
        pass


class AsyncNoop(Callback):
    async def on_batch_end(self, epoch, batch_idx, **kwargs):
        pass


@dataclass
class Row:
    case: str
    manager_s: float
    direct_s: float
    direct_how: str


def median_seconds(fn: Callable[[], None], number: int, repeat: int) -> float:
    """The median over ``repeat`` runs of ``number`` calls of ``fn``, in seconds per call."""
    return statistics.median(timeit.repeat(fn, number=number, repeat=repeat)) / number


def timed(
    case: str, callbacks: list[Callback], hook: str, direct: Callable[[], None], how: str, number: int, repeat: int
) -> Row:
    """The row of ``hook`` dispatched by a manager of ``callbacks``, next to ``direct``, which calls them by hand."""
    manager = CallbackManager(callbacks)
    manager.call(hook, epoch=0, batch_idx=1)  # outside the timing: an async hook's first call creates the thread's loop
    dispatched = median_seconds(lambda: manager.call(hook, epoch=0, batch_idx=1), number, repeat)
    return Row(case, dispatched, median_seconds(direct, number, repeat), how)


def measure(n: int, number: int, repeat: int) -> list[Row]:
    loop = asyncio.new_event_loop()
    sync, keywords, coroutines = ([kind() for _ in range(n)] for kind in (SyncNoop, KwargsNoop, AsyncNoop))
    positional_methods = [cb.on_batch_end for cb in sync]
    keyword_methods = [cb.on_batch_end for cb in keywords]
    async_methods = [cb.on_batch_end for cb in coroutines]
    inherited = [cb.on_batch_start for cb in sync]  # the base class's no-op, not overridden

    def direct_positional() -> None:
        for method in positional_methods:
            method(0, 1)

    def direct_keywords() -> None:
        for method in keyword_methods:
            method(epoch=0, batch_idx=1)

    def direct_async() -> None:
        for method in async_methods:
            loop.run_until_complete(method(0, 1))

    def direct_inherited() -> None:
        for method in inherited:
            method(0, 1)

    manager = CallbackManager(sync)
    base = "m(0, 1) on the base no-op"
    rows = [
        timed("sync no-op, seed-000 signature", sync, "on_batch_end", direct_positional, "m(0, 1)", number, repeat),
        timed(
            "sync no-op, **kwargs signature", keywords, "on_batch_end", direct_keywords, "m(epoch=0, batch_idx=1)",
            number, repeat,
        ),
        timed(
            "async no-op (no running loop)", coroutines, "on_batch_end", direct_async,
            "loop.run_until_complete(m(0, 1))", max(number // 20, 100), repeat,
        ),
        timed("hook nobody overrides", sync, "on_batch_start", direct_inherited, base, number, repeat),
        Row(
            "  ... guarded by overrides()",
            median_seconds(lambda: manager.overrides("on_batch_start"), number, repeat),
            median_seconds(direct_inherited, number, repeat),
            base,
        ),
    ]
    loop.close()
    return rows


def render(rows: list[Row], n: int, repeat: int) -> str:
    us = 1e6
    header = (
        f"{'case':32} {'manager/hook':>13} {'direct/hook':>12} {'manager/cb':>11} {'direct/cb':>10} "
        f"{'overhead/cb':>12} {'ratio':>7}  direct call"
    )
    lines = [
        f"CallbackManager dispatch, {n} callbacks, median of {repeat} timeit repeats "
        f"(Python {platform.python_version()}, torch {torch.__version__}, {platform.machine()})",
        "",
        header,
        "-" * len(header),
    ]
    for r in rows:
        lines.append(
            f"{r.case:32} {r.manager_s * us:10.3f} µs {r.direct_s * us:9.3f} µs {r.manager_s * us / n:8.3f} µs "
            f"{r.direct_s * us / n:7.3f} µs {(r.manager_s - r.direct_s) * us / n:9.3f} µs "
            f"{r.manager_s / r.direct_s:6.2f}x  {r.direct_how}"
        )
    sync_cb = rows[0].manager_s * us / n
    verdict = "within" if sync_cb < TARGET_SYNC_US else "OVER"
    lines += [
        "",
        f"overridden sync hook: {sync_cb:.3f} µs per callback-call, {verdict} the {TARGET_SYNC_US:g} µs target; "
        f"a hook nobody overrides: {rows[3].manager_s * us:.3f} µs per hook call, whatever the number of callbacks.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callbacks", type=int, default=5, help="callbacks per manager (default: 5)")
    parser.add_argument("--number", type=int, default=20_000, help="calls per timeit repeat (default: 20000)")
    parser.add_argument("--repeat", type=int, default=7, help="timeit repeats; the median is shown (default: 7)")
    args = parser.parse_args(argv)
    rows = measure(args.callbacks, args.number, args.repeat)
    print(render(rows, args.callbacks, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
