"""The driver's bookkeeping of one :class:`~federated.RayBackend` round, and how a round is cut into requests."""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from federated.backends._ray_worker import import_ray, unpack
from federated.messages import ClientFailure, ClientUpdate

if TYPE_CHECKING:
    from federated.client.client import Client
    from federated.messages import FitTask, StateDict

IN_FLIGHT = 2  # calls queued per worker: the next one waits in the worker while the driver reads a result
_PENDING_BYTES = 256 * 2**20  # default batching: as many clients per call as keep the waiting updates below this


@dataclass
class Call:
    """One request in flight: the stream of its clients' results, its worker, their positions in the round.

    ``taken`` counts the results read so far: the worker sends each client's as soon as it is trained.
    """

    ref: Any
    slot: int
    positions: tuple[int, ...]
    order: int
    taken: int = 0


@dataclass
class Round:
    """The bookkeeping of one round: runs to send, requests in flight, outcomes not yet yielded."""

    clients: Sequence[Client]
    tasks: Sequence[FitTask]
    round_num: int
    round_ref: Any
    window: int
    workers: int
    todo: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)  # a heap of (first position, run)
    calls: dict[Any, Call] = field(default_factory=dict)
    done: dict[int, tuple[ClientUpdate | ClientFailure, dict[str, Any] | None]] = field(default_factory=dict)
    sent: Iterator[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.busy = [0] * self.workers  # requests in flight per worker
        self.queued = [0] * self.workers  # clients in flight per worker
        self.fresh = [True] * self.workers  # a worker's next request carries the round's inputs

    def requeue(self, positions: tuple[int, ...]) -> None:
        heapq.heappush(self.todo, (positions[0], positions))

    def end(self, call: Call) -> None:
        """``call`` is over: its worker is one request, and its clients not back, lighter."""
        self.calls.pop(call.ref, None)
        self.busy[call.slot] -= 1
        self.queued[call.slot] -= len(call.positions) - call.taken

    def take_next(self, call: Call) -> None:
        """Read ``call``'s next client result, which is back; the call ends with its last one.

        Raises:
            ray.exceptions.RayError: The call failed there, or its worker died.
        """
        ray = import_ray()
        outcome, packed, state = ray.get(next(call.ref))
        if packed is not None and isinstance(outcome, ClientUpdate):
            outcome.weights = unpack(packed)
        self.done[call.positions[call.taken]] = (outcome, state)
        call.taken += 1
        self.queued[call.slot] -= 1
        if call.taken == len(call.positions):
            self.end(call)

    def drain(self, call: Call, timeout: float) -> None:
        """Read the results of ``call`` that come back within ``timeout`` seconds, up to the first error."""
        ray = import_ray()
        until = time.monotonic() + timeout
        while call.taken < len(call.positions):
            ready, _ = ray.wait([call.ref], num_returns=1, timeout=max(0.0, until - time.monotonic()))
            if not ready:
                return
            try:
                self.take_next(call)
            except ray.exceptions.RayError:
                return

    def retry_or_fail(self, call: Call, error: str, details: str) -> None:
        """The clients not back from a failed request are sent again one per request; a lone one is a failure."""
        left = call.positions[call.taken :]
        if len(left) > 1:
            for position in left:
                self.requeue((position,))
            return
        position = left[0]
        failure = ClientFailure(client_id=self.clients[position].client_id, error=error, traceback=details)
        self.done[position] = (failure, None)


def auto_size(n: int, workers: int, weights: StateDict) -> int:
    """A worker's whole share of the round, unless the updates that may wait in the driver pass ``_PENDING_BYTES``."""
    update = sum(t.numel() * t.element_size() for t in weights.values()) or 1
    return max(1, min(math.ceil(n / workers), _PENDING_BYTES // ((IN_FLIGHT + 1) * workers * update)))


def runs(sizes: Sequence[int], count: int) -> list[tuple[int, ...]]:
    """Positions ``0..len(sizes)-1`` cut into ``count`` consecutive non-empty runs of about equal total size.

    Example:
        >>> runs([10, 10, 10, 30, 5, 5], 2)
        [(0, 1, 2), (3, 4, 5)]
        >>> runs([1] * 5, 2)
        [(0, 1, 2), (3, 4)]
    """
    n = len(sizes)
    count = max(1, min(count, n))
    total = sum(sizes)
    runs: list[tuple[int, ...]] = []
    start, acc = 0, 0
    for i, size in enumerate(sizes):
        target = total * (len(runs) + 1) / count
        if len(runs) < count - 1 and i > start and acc + size - target > target - acc:
            runs.append(tuple(range(start, i)))  # cutting before this one comes closer to the target
            start = i
            target = total * (len(runs) + 1) / count
        acc += size
        left = count - len(runs) - 1  # runs still to cut after this one
        if left and n - i - 1 >= left and (acc >= target or n - i - 1 == left):
            runs.append(tuple(range(start, i + 1)))
            start = i + 1
    runs.append(tuple(range(start, n)))
    return runs
