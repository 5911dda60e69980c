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


def measure(n: int, number: int, repeat: int) -> list[Row]:
    rows = []
    loop = asyncio.new_event_loop()

    sync = [SyncNoop() for _ in range(n)]
    manager = CallbackManager(sync)
    methods = [cb.on_batch_end for cb in sync]

    def direct_positional() -> None:
        for method in methods:
            method(0, 1)

    rows.append(
        Row(
            "sync no-op, seed-000 signature",
            median_seconds(lambda: manager.call("on_batch_end", epoch=0, batch_idx=1), number, repeat),
            median_seconds(direct_positional, number, repeat),
            "m(0, 1)",
        )
    )

    kwargs_cbs = [KwargsNoop() for _ in range(n)]
    kwargs_manager = CallbackManager(kwargs_cbs)
    kwargs_methods = [cb.on_batch_end for cb in kwargs_cbs]

    def direct_keywords() -> None:
        for method in kwargs_methods:
            method(epoch=0, batch_idx=1)

    rows.append(
        Row(
            "sync no-op, **kwargs signature",
            median_seconds(lambda: kwargs_manager.call("on_batch_end", epoch=0, batch_idx=1), number, repeat),
            median_seconds(direct_keywords, number, repeat),
            "m(epoch=0, batch_idx=1)",
        )
    )

    async_cbs = [AsyncNoop() for _ in range(n)]
    async_manager = CallbackManager(async_cbs)
    async_methods = [cb.on_batch_end for cb in async_cbs]
    async_manager.call("on_batch_end", epoch=0, batch_idx=1)  # creates the thread's loop outside the timing

    def direct_async() -> None:
        for method in async_methods:
            loop.run_until_complete(method(0, 1))

    async_number = max(number // 20, 100)
    rows.append(
        Row(
            "async no-op (no running loop)",
            median_seconds(lambda: async_manager.call("on_batch_end", epoch=0, batch_idx=1), async_number, repeat),
            median_seconds(direct_async, async_number, repeat),
            "loop.run_until_complete(m(0, 1))",
        )
    )

    inherited = [cb.on_batch_start for cb in sync]  # the base class's no-op, not overridden

    def direct_inherited() -> None:
        for method in inherited:
            method(0, 1)

    rows.append(
        Row(
            "hook nobody overrides",
            median_seconds(lambda: manager.call("on_batch_start", epoch=0, batch_idx=1), number, repeat),
            median_seconds(direct_inherited, number, repeat),
            "m(0, 1) on the base no-op",
        )
    )
    rows.append(
        Row(
            "  ... guarded by overrides()",
            median_seconds(lambda: manager.overrides("on_batch_start"), number, repeat),
            median_seconds(direct_inherited, number, repeat),
            "m(0, 1) on the base no-op",
        )
    )
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
