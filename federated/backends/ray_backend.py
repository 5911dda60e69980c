"""Client fits in parallel on a pool of long-lived Ray actors, with the results of the sequential backend."""

from __future__ import annotations

import dataclasses
import heapq
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from callbacks import register
from callbacks.arguments import check_number, one_line
from callbacks.exceptions import ArgumentError
from federated.backends._ray_round import IN_FLIGHT, Call, Round, auto_size, runs
from federated.backends._ray_worker import (
    ClientWorker,
    Task,
    import_ray,
    init_local,
    worker_env,
    worker_trainer_kwargs,
)
from federated.backends.backend import Backend, FitSetup
from federated.messages import ClientEvaluation, ClientFailure, ClientUpdate, EvaluateTask, FitTask, late

if TYPE_CHECKING:
    from federated.client.client import Client
    from federated.messages import StateDict

__all__ = ["RayBackend"]

log = logging.getLogger(__name__)

_SETTLE_S = 30.0  # how long the calls of a dead worker may take to report that they ended


@register("backend.ray")
class RayBackend(Backend):
    """Trains a round's clients in parallel on a pool of long-lived Ray actors.

    Each worker is a Ray actor holding a :class:`~federated.ClientRunner` (a model replica and one
    reused ``lightning.Trainer``), built once per ``fit``; it fetches a client's data once and keeps
    it. The driver owns every client's state (callbacks, optimizer, local weights) and sends it
    with each fit, so a client's fit does not depend on the worker: the final weights are the
    sequential backend's, bit for bit. Outcomes are yielded in the sampled order. A worker that
    dies is replaced, and a client that took it down is a :class:`~federated.ClientFailure`; past
    the round's deadline (``round_timeout``) the clients not back fail and their workers are
    replaced. ``docs/ray.md`` describes the batching of requests, the faults and the workers'
    environment.

    Args:
        num_workers: Ray actors, each training one client at a time. Defaults to ``2``.
        num_cpus_per_client: CPUs Ray reserves per worker; also its torch threads. Defaults to ``1``.
        num_gpus_per_client: GPUs per worker (a fraction shares one). Defaults to ``0``.
        address: A running Ray cluster to join (``"auto"``, ``"host:6379"``, ``"ray://host:10001"``);
            ``None`` starts a local Ray with ``num_workers * num_cpus_per_client`` CPUs (its workers
            at this process's priority) unless Ray is initialised already. Ray is shut down after
            ``fit`` only if it was started there. Defaults to ``None``.
        clients_per_call: About how many clients a worker trains per request; ``None`` decides as
            above. Defaults to ``None``.
        runtime_env: Ray ``runtime_env`` of the workers (e.g. ``working_dir`` or ``py_modules`` so
            that other machines can import your code); the environment variables above are added.
            Defaults to ``None``.
        start_timeout: Seconds to wait for the workers to start. Defaults to ``300``.

    Raises:
        ImportError: Ray is not installed (one line naming the extra to install).
        ValueError: An argument out of range, or more GPUs asked of the local Ray than this machine has.

    Example:
        >>> from federated import MLP, FederatedTrainer, digits_federation
        >>> loaders, test = digits_federation(num_clients=4, partition="iid", seed=0)
        >>> backend = RayBackend(num_workers=2, num_cpus_per_client=1)  # doctest: +SKIP
        >>> fed = FederatedTrainer(MLP(hidden=16), loaders, test, rounds=1, backend=backend)  # doctest: +SKIP
        >>> fed.fit().rounds  # doctest: +SKIP
        1
    """

    def __init__(
        self,
        *,
        num_workers: int = 2,
        num_cpus_per_client: float = 1,
        num_gpus_per_client: float = 0,
        address: str | None = None,
        clients_per_call: int | None = None,
        runtime_env: dict[str, Any] | None = None,
        start_timeout: float = 300.0,
    ) -> None:
        ray = import_ray()
        self.num_workers = check_number("num_workers", num_workers, low=1, integer=True)
        self.num_cpus_per_client = check_number("num_cpus_per_client", num_cpus_per_client, low=0, low_open=True)
        self.num_gpus_per_client = check_number("num_gpus_per_client", num_gpus_per_client, low=0)
        if address is not None and not isinstance(address, str):
            raise ValueError(f"`address` must be a Ray address such as 'auto' or 'host:6379', or None, got {address!r}")
        self.address = address
        if address is None and not ray.is_initialized():
            _check_local_gpus(self.num_workers, self.num_gpus_per_client)
        if clients_per_call is not None:
            check_number("clients_per_call", clients_per_call, low=1, integer=True)
        self.clients_per_call = clients_per_call
        if runtime_env is not None and not isinstance(runtime_env, Mapping):
            raise ValueError(f"`runtime_env` must be a mapping (Ray's runtime_env), got {type(runtime_env).__name__}")
        self.runtime_env = dict(runtime_env or {})
        self.start_timeout = check_number("start_timeout", start_timeout, low=0, low_open=True)
        self._started_ray = False
        self._new_worker: Any = None
        self._workers: list[Any] = []
        self._held: list[set[int]] = []  # per worker, the clients whose data it holds
        self._client_refs: list[Any] = []
        self._clients: dict[int, Client] = {}
        self._starting: list[Any] = []  # the start-up of workers started in place of others, not yet waited for

    def __repr__(self) -> str:
        return (
            f"RayBackend(num_workers={self.num_workers}, num_cpus_per_client={self.num_cpus_per_client:g}, "
            f"num_gpus_per_client={self.num_gpus_per_client:g}, address={self.address!r})"
        )

    # ------------------------------------------------------------------ the pool

    def check_trainer_kwargs(self, trainer_kwargs: Mapping[str, Any]) -> None:
        worker_trainer_kwargs(trainer_kwargs, self.num_gpus_per_client)

    def start(self, setup: FitSetup) -> None:
        ray = import_ray()
        kwargs = worker_trainer_kwargs(setup.trainer_kwargs, self.num_gpus_per_client)
        if not ray.is_initialized():
            if self.address is not None:
                ray.init(address=self.address)
            else:
                init_local(ray, math.ceil(self.num_workers * self.num_cpus_per_client))
            self._started_ray = True
        try:
            self._check_resources(ray)
            try:
                self._client_refs = [ray.put(client.fresh()) for client in setup.clients]
                self._clients = {client.client_id: client for client in setup.clients}
            except Exception as exc:
                what = f"{type(exc).__name__}: {exc}"
                raise ValueError(f"the clients' data cannot be sent to Ray workers: {what}") from exc
            actor = ray.remote(ClientWorker).options(
                num_cpus=self.num_cpus_per_client,
                num_gpus=self.num_gpus_per_client,
                runtime_env=worker_env(self.runtime_env, self.num_gpus_per_client),
                max_restarts=0,
                max_task_retries=0,
            )
            settings = {**setup.runner_settings(), "trainer_kwargs": kwargs, "algorithms": setup.algorithms}
            args = (ray.put(setup.model), settings)
            threads = max(1, int(self.num_cpus_per_client))
            self._new_worker = lambda: actor.remote(*args, threads)
            self._workers = [self._new_worker() for _ in range(self.num_workers)]
            self._held = [set() for _ in self._workers]
            self._starting = [w.ready.remote() for w in self._workers]
            self._await_workers()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        ray = import_ray()
        if ray.is_initialized():
            for worker in self._workers:
                ray.kill(worker)
        self._workers, self._client_refs, self._held, self._new_worker = [], [], [], None
        self._starting = []
        if self._started_ray:
            self._started_ray = False
            ray.shutdown()

    def _await_workers(self) -> None:
        """Wait for the workers still starting: their start-up (importing torch and Lightning) is no round's time."""
        ray = import_ray()
        starting, self._starting = self._starting, []
        try:
            ray.get(starting, timeout=self.start_timeout)
        except ray.exceptions.GetTimeoutError as exc:
            raise RuntimeError(
                f"{len(starting)} Ray worker(s) did not start within {self.start_timeout:g} s; "
                f"the cluster has {ray.available_resources()} available"
            ) from exc

    def _check_resources(self, ray: Any) -> None:
        total = ray.cluster_resources()
        for name, per_worker in (("CPU", self.num_cpus_per_client), ("GPU", self.num_gpus_per_client)):
            needed = self.num_workers * per_worker
            if needed > total.get(name, 0) + 1e-9:
                raise ValueError(
                    f"`num_workers={self.num_workers}` workers with {per_worker:g} {name}(s) each need {needed:g} "
                    f"{name}s; the Ray cluster has {total.get(name, 0):g}. HINT: lower `num_workers` or "
                    f"`num_{name.lower()}s_per_client`"
                )

    # ------------------------------------------------------------------ a round

    def fit(self, tasks: Sequence[FitTask], *, timeout: float | None = None) -> Iterator[ClientUpdate | ClientFailure]:
        """Run the tasks on the pool; past the deadline, those not back fail and their workers are replaced."""
        ray = import_ray()
        if not self._workers:
            raise RuntimeError("RayBackend.fit before start(setup)")
        if not tasks:
            return
        self._await_workers()  # those replaced in the last round
        deadline = None if timeout is None else time.monotonic() + timeout
        n = len(tasks)
        clients = [self._clients[task.client_id] for task in tasks]
        weights = _shared_weights(tasks)
        size = self.clients_per_call or auto_size(n, self.num_workers, weights)
        r = Round(
            clients,
            tasks,
            tasks[0].round_num,
            ray.put(weights),
            window=(IN_FLIGHT + 1) * self.num_workers * size,
            workers=len(self._workers),
        )
        for run in runs([c.num_samples for c in clients], math.ceil(n / size)):
            r.requeue(run)
        next_pos = 0
        while True:
            self._send(r, next_pos)
            while next_pos in r.done:
                outcome, state = r.done.pop(next_pos)
                if state:
                    clients[next_pos].load_state_dict(state)  # the driver owns the clients' states
                next_pos += 1
                yield outcome
            if next_pos >= n:
                return
            self._send(r, next_pos)
            wait_s = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _ = ray.wait(list(r.calls), num_returns=1, timeout=wait_s)
            if not ready:
                self._expire(r, timeout)
                continue
            call = r.calls[ready[0]]
            try:
                r.take_next(call)
            except ray.exceptions.RayActorError as exc:
                self._worker_died(r, call, exc)
            except ray.exceptions.RayError as exc:  # the worker lives; what it holds is uncertain
                r.end(call)
                self._held[call.slot], r.fresh[call.slot] = set(), True
                r.retry_or_fail(call, f"the Ray call failed: {one_line(exc, lines=1)}", str(exc))

    def _expire(self, r: Round, timeout: float | None) -> None:
        """The round's deadline passed: what finished counts, the rest fail, and busy workers are replaced.

        A worker trains its requests in the order sent and reports each client as it ends: on each
        busy worker, the first client not back was training, and those after it had not started.
        """
        for call in sorted(r.calls.values(), key=lambda c: c.order):
            r.drain(call, timeout=0)
        running: dict[int, int] = {}  # per busy worker, the client it was training
        for call in sorted(r.calls.values(), key=lambda c: c.order):
            running.setdefault(call.slot, call.positions[call.taken])
            for position in call.positions[call.taken :]:
                started = running[call.slot] == position
                r.done[position] = (late(r.clients[position], timeout, started=started), None)
        for _, positions in r.todo:
            for position in positions:
                r.done[position] = (late(r.clients[position], timeout, started=False), None)
        for slot in sorted(running):
            self._replace(r, slot)  # drops its late results
        r.calls.clear()
        r.todo.clear()
        if running:
            late_ids = [r.clients[p].client_id for p in running.values()]
            log.warning("round %d: client(s) %s missed the deadline; their workers are replaced", r.round_num, late_ids)

    def evaluate(self, tasks: Sequence[EvaluateTask]) -> Iterator[ClientEvaluation | ClientFailure]:
        """Evaluate on the pool: the clients cut into one run per worker, each run one request."""
        ray = import_ray()
        if not self._workers:
            raise RuntimeError("RayBackend.evaluate before start(setup)")
        if not tasks:
            return
        clients = [self._clients[task.client_id] for task in tasks]
        box = [ray.put(_shared_weights(tasks))]
        calls = {}
        for slot, run in enumerate(runs([c.num_val_samples for c in clients], len(self._workers))):
            calls[slot] = (run, self._workers[slot].evaluate.remote(box, self._tasks(slot, tasks, run)))
        outcomes: dict[int, ClientEvaluation | ClientFailure] = {}
        for slot, (run, ref) in calls.items():
            try:
                results = ray.get(ref)
            except ray.exceptions.RayError as exc:
                error = f"the Ray evaluation failed: {one_line(exc, lines=1)}"
                results = [ClientFailure(tasks[p].client_id, error, str(exc)) for p in run]
                if isinstance(exc, ray.exceptions.RayActorError):
                    self._workers[slot] = self._new_worker()
                self._held[slot] = set()
            outcomes.update(zip(run, results, strict=True))
        for position in range(len(tasks)):
            yield outcomes[position]

    def _send(self, r: Round, next_pos: int) -> None:
        """Send queued runs to the least loaded workers, within ``r.window`` positions of ``next_pos``."""
        while r.todo and r.todo[0][0] < next_pos + r.window and min(r.busy) < IN_FLIGHT:
            _, positions = heapq.heappop(r.todo)
            slot = min((s for s, b in enumerate(r.busy) if b < IN_FLIGHT), key=lambda s: r.queued[s])
            tasks = self._tasks(slot, r.tasks, positions)
            box = [r.round_ref] if r.fresh[slot] else None
            r.fresh[slot] = False
            ref = self._workers[slot].fit.options(num_returns="streaming").remote(box, tasks)
            r.calls[ref] = Call(ref, slot, positions, next(r.sent))
            r.busy[slot] += 1
            r.queued[slot] += len(positions)

    def _worker_died(self, r: Round, call: Call, exc: BaseException) -> None:
        """``call``'s worker died: keep what it finished, blame the client it was training, resend the rest."""
        slot = call.slot
        lost = sorted((c for c in r.calls.values() if c.slot == slot), key=lambda c: c.order)
        for other in lost:
            del r.calls[other.ref]
            if other is not call:  # they end too, now that their worker is gone
                r.drain(other, timeout=_SETTLE_S)
        # a worker trains its requests in the order sent, each client after the other: the first one not back was
        # training when the worker died
        left = [c.positions[c.taken :] for c in lost if c.taken < len(c.positions)]
        first, rest = left[0][0], [left[0][1:], *left[1:]]
        for positions in rest:
            if positions:
                r.requeue(positions)
        culprit = r.clients[first]
        log.warning("round %d: a Ray worker died training client %d; starting again", r.round_num, culprit.client_id)
        error = f"the Ray worker died: {one_line(exc, lines=1)}"
        r.done[first] = (ClientFailure(client_id=culprit.client_id, error=error, traceback=str(exc)), None)
        self._replace(r, slot)

    def _replace(self, r: Round, slot: int) -> None:
        """Kill the worker of ``slot`` and start a new one, holding nothing, in its place."""
        import_ray().kill(self._workers[slot])
        self._workers[slot] = self._new_worker()
        self._starting.append(self._workers[slot].ready.remote())
        self._held[slot] = set()
        r.busy[slot], r.queued[slot], r.fresh[slot] = 0, 0, True

    def _tasks(self, slot: int, tasks: Sequence[FitTask | EvaluateTask], positions: Sequence[int]) -> list[Task]:
        """``tasks[positions]`` for the worker of ``slot`` (weights apart), with the data of clients new to it."""
        held = self._held[slot]
        out: list[Task] = []
        for p in positions:
            task = tasks[p]
            data = None if task.client_id in held else [self._client_refs[task.client_id]]
            held.add(task.client_id)
            out.append((dataclasses.replace(task, weights={}), self._clients[task.client_id].state_dict(), data))
        return out


def _shared_weights(tasks: Sequence[FitTask | EvaluateTask]) -> StateDict:
    """The weights every task of the round starts from, sent once to each worker.

    Raises:
        ValueError: The tasks carry different weights dicts.
    """
    weights = tasks[0].weights
    if any(task.weights is not weights for task in tasks):
        raise ValueError("RayBackend: the tasks of a round must share one weights dict (it is sent once per worker)")
    return weights


def _check_local_gpus(num_workers: int, num_gpus_per_client: float) -> None:
    """Refuse workers asking a local Ray for more GPUs than this machine has: they would never start."""
    needed = num_workers * num_gpus_per_client
    if needed == 0:
        return
    import torch

    found = torch.cuda.device_count()
    if needed > found + 1e-9:  # fractions of one GPU add up to a whole one
        raise ArgumentError(
            "num_gpus_per_client",
            f"{num_gpus_per_client:g} for each of `num_workers={num_workers}` workers needs {needed:g} GPUs, and this "
            f"machine has {found}. HINT: lower `num_workers` or `num_gpus_per_client`, or join a cluster with GPUs "
            "through `address`",
        )
