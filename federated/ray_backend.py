"""Client fits in parallel on a pool of long-lived Ray actors, with the results of the sequential backend."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from callbacks import register
from federated.backend import Backend
from federated.client import Client
from federated.results import ClientFailure, ClientUpdate
from federated.runner import ClientRunner, quiet_lightning

if TYPE_CHECKING:
    from lightning.pytorch import LightningModule
    from lightning.pytorch.callbacks import Callback as LightningCallback

    from federated.aggregate import StateDict
    from federated.trainer import FederatedTrainer

__all__ = ["RayBackend"]

_Task = tuple[int, int, dict[str, Any], list[Any]]  # client id, seed, its callback states, [ref of its data]

log = logging.getLogger(__name__)

MISSING_RAY = "backend 'ray' needs the ray extra: pip install 'lightning-bridge[ray]'"
_IN_FLIGHT = 2  # calls queued per worker: the next one waits in the worker while the driver reads a result
_CACHED_CLIENTS = 64  # client data sets a worker keeps deserialised (an LRU)
_NICENESS = "RAY_worker_niceness"
_CPU_ACCELERATORS = (None, "auto", "cpu")
_GPU_ACCELERATORS = (None, "auto", "gpu", "cuda")


@register("backend.ray")
class RayBackend(Backend):
    """Trains a round's clients in parallel on a pool of long-lived Ray actors.

    Each worker is a Ray actor that holds a :class:`~federated.ClientRunner` (a model replica and
    one reused ``lightning.Trainer``) built once per ``fit``. The driver ships the data of every
    client once per federation (``ray.put``; a worker keeps the ones it trained recently), the
    round's global weights and strategy callbacks once per round, and per client its id, seed and
    the states of its client callbacks; a worker sends back the client's update or failure (with
    the per-epoch metrics the learner hooks need) and the callbacks' new states. The driver owns
    those states (they are what its :class:`~federated.Client` objects, and so the federation
    checkpoint, hold): under Ray what carries over from one round to the next is a callback's
    ``state_dict``, exactly what carries over a resume.

    Outcomes come back in the sampled order, so updates are folded into the strategy, and learner
    hooks fire, in that order while later clients still train; at most about
    ``2 * num_workers * clients_per_call`` finished updates wait in the driver. With each client
    fit seeded by (seed, round, client), the final weights are those of the sequential backend.

    A worker that dies (killed, out of memory, ``os._exit`` in user code) makes the client it was
    training a :class:`~federated.ClientFailure`; the other clients of that call and those queued
    behind it are trained again elsewhere, and a new worker takes the dead one's place.

    Lightning cannot hang in a worker on counting CUDA devices (Lightning issue 14292, a fork in
    1.7's device count): the workers' environment is set before Lightning is imported (Ray's
    ``runtime_env``): ``PL_DISABLE_FORK=1``, ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (torch counts
    devices through NVML, no CUDA context, no fork; what Lightning 2.x's ``lightning.fabric`` sets
    too, only later), and, for CPU workers, ``CUDA_VISIBLE_DEVICES=""`` (Ray leaves it alone for
    actors without GPUs). The client trainer's accelerator is forced to ``cpu``, or ``gpu`` with
    ``num_gpus_per_client > 0``, on one device: no ``"auto"`` probing, and no device Ray did not grant.

    Args:
        num_workers: Ray actors, each training one client at a time. Defaults to ``2``.
        num_cpus_per_client: CPUs Ray reserves per worker; also its torch threads. Defaults to ``1``.
        num_gpus_per_client: GPUs per worker (a fraction shares one). Defaults to ``0``.
        address: A running Ray cluster to join (``"auto"``, ``"host:6379"``, ``"ray://host:10001"``);
            ``None`` starts a local Ray with ``num_workers * num_cpus_per_client`` CPUs unless Ray
            is initialised already. Ray is shut down after ``fit`` only if it was started here.
            Defaults to ``None``.
        clients_per_call: Clients a worker trains per request; ``None`` picks about a quarter of a
            worker's share of the round, which amortises Ray's per-request cost over small client
            fits. Defaults to ``None``.
        runtime_env: Ray ``runtime_env`` of the workers (e.g. ``working_dir`` or ``py_modules``
            so that other machines can import your code); the environment variables above are
            added. Defaults to ``None``.
        start_timeout: Seconds to wait for the workers to start. Defaults to ``300``.

    Raises:
        ImportError: Ray is not installed (one line naming the extra to install).
        ValueError: An argument out of range.

    Example:
        >>> from federated import MLP, FederatedTrainer, digits_federation
        >>> loaders, test = digits_federation(num_clients=4, partition="iid", seed=0)
        >>> backend = RayBackend(num_workers=2, num_cpus_per_client=1)
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
        import_ray()
        self.num_workers = _number(num_workers, "num_workers", integer=True)
        self.num_cpus_per_client = _number(num_cpus_per_client, "num_cpus_per_client")
        self.num_gpus_per_client = _number(num_gpus_per_client, "num_gpus_per_client", zero=True)
        if address is not None and not isinstance(address, str):
            raise ValueError(f"`address` must be a Ray address such as 'auto' or 'host:6379', or None, got {address!r}")
        self.address = address
        self.clients_per_call = (
            None if clients_per_call is None else _number(clients_per_call, "clients_per_call", integer=True)
        )
        if runtime_env is not None and not isinstance(runtime_env, Mapping):
            raise ValueError(f"`runtime_env` must be a mapping (Ray's runtime_env), got {type(runtime_env).__name__}")
        self.runtime_env = dict(runtime_env or {})
        self.start_timeout = _number(start_timeout, "start_timeout")
        self._started_ray = False
        self._new_worker: Any = None
        self._workers: list[Any] = []
        self._client_refs: list[Any] = []

    def __repr__(self) -> str:
        return (
            f"RayBackend(num_workers={self.num_workers}, num_cpus_per_client={self.num_cpus_per_client}, "
            f"num_gpus_per_client={self.num_gpus_per_client}, address={self.address!r})"
        )

    # ------------------------------------------------------------------ the pool

    def check_trainer_kwargs(self, trainer_kwargs: Mapping[str, Any]) -> None:
        worker_trainer_kwargs(trainer_kwargs, self.num_gpus_per_client)

    def start(self, trainer: FederatedTrainer) -> None:
        ray = import_ray()
        kwargs = worker_trainer_kwargs(trainer.trainer_kwargs, self.num_gpus_per_client)
        if not ray.is_initialized():
            if self.address is not None:
                ray.init(address=self.address)
            else:
                _init_local(ray, math.ceil(self.num_workers * self.num_cpus_per_client))
            self._started_ray = True
        try:
            self._check_resources(ray)
            try:
                self._client_refs = [ray.put(client.fresh()) for client in trainer.clients]
            except Exception as exc:
                raise ValueError(
                    f"the clients' data cannot be sent to Ray workers: {type(exc).__name__}: {exc}"
                ) from exc
            env_vars = {
                **self.runtime_env.get("env_vars", {}),
                # set before the worker imports Lightning (Lightning issue 14292; see the class docstring)
                "PL_DISABLE_FORK": "1",
                "PYTORCH_NVML_BASED_CUDA_CHECK": "1",
                **({"CUDA_VISIBLE_DEVICES": ""} if self.num_gpus_per_client == 0 else {}),
            }
            actor = ray.remote(_ClientWorker).options(
                num_cpus=self.num_cpus_per_client,
                num_gpus=self.num_gpus_per_client,
                runtime_env={**self.runtime_env, "env_vars": env_vars},
                max_restarts=0,
                max_task_retries=0,
            )
            model_ref = ray.put(trainer.model)
            threads = max(1, int(self.num_cpus_per_client))
            self._new_worker = lambda: actor.remote(
                model_ref, trainer.local_epochs, kwargs, trainer.reuse_trainer, threads
            )
            self._workers = [self._new_worker() for _ in range(self.num_workers)]
            try:
                ray.get([w.ready.remote() for w in self._workers], timeout=self.start_timeout)
            except ray.exceptions.GetTimeoutError as exc:
                raise RuntimeError(
                    f"{self.num_workers} Ray workers did not start within {self.start_timeout:g} s; "
                    f"the cluster has {ray.available_resources()} available"
                ) from exc
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        ray = import_ray()
        if ray.is_initialized():
            for worker in self._workers:
                ray.kill(worker)
        self._workers, self._client_refs, self._new_worker = [], [], None
        if self._started_ray:
            self._started_ray = False
            ray.shutdown()

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

    def fit_clients(
        self,
        clients: Sequence[Client],
        weights: StateDict,
        *,
        round_num: int,
        seeds: Sequence[int],
        lr_scale: float = 1.0,
        callbacks: Sequence[LightningCallback] = (),
    ) -> Iterator[ClientUpdate | ClientFailure]:
        ray = import_ray()
        if not self._workers:
            raise RuntimeError("RayBackend.fit_clients before start(trainer)")
        n = len(clients)
        size = self.clients_per_call or max(1, math.ceil(n / (4 * self.num_workers)))
        window = _IN_FLIGHT * self.num_workers * size  # positions dispatched beyond the next one to yield
        round_box = [ray.put((weights, list(callbacks)))]  # in a list: the worker fetches it once per round
        todo = [(start, tuple(range(start, min(n, start + size)))) for start in range(0, n, size)]
        heapq.heapify(todo)
        calls: dict[Any, _Call] = {}  # object ref -> call
        busy = [0] * len(self._workers)
        done: dict[int, tuple[ClientUpdate | ClientFailure, dict[str, Any] | None]] = {}
        next_pos = 0
        sent = itertools.count()
        while next_pos < n:
            while todo and todo[0][0] < next_pos + window and min(busy) < _IN_FLIGHT:
                _, positions = heapq.heappop(todo)
                slot = busy.index(min(busy))
                tasks = [
                    (clients[p].client_id, seeds[p], clients[p].state_dict(), [self._client_refs[clients[p].client_id]])
                    for p in positions
                ]
                ref = self._workers[slot].fit.remote(round_box, round_num, lr_scale, tasks)
                calls[ref] = _Call(slot, self._workers[slot], positions, next(sent))
                busy[slot] += 1
            while next_pos in done:
                outcome, state = done.pop(next_pos)
                if state:
                    clients[next_pos].load_state_dict(state)  # the driver owns the callback states
                next_pos += 1
                yield outcome
            if next_pos >= n or not calls:
                continue
            ready, _ = ray.wait(list(calls), num_returns=1)
            call = calls.pop(ready[0])
            if call.worker is not self._workers[call.slot]:
                continue  # a call of a worker already replaced: handled with its death
            busy[call.slot] -= 1
            try:
                results = ray.get(ready[0])
            except ray.exceptions.RayActorError as exc:
                self._replace(call, calls, busy, todo, clients, round_num, exc, done)
                continue
            except ray.exceptions.RayError as exc:
                _retry_or_fail(call, todo, clients, done, f"the Ray call failed: {_first_line(exc)}", str(exc))
                continue
            for position, result in zip(call.positions, results, strict=True):
                done[position] = result

    def _replace(
        self,
        call: _Call,
        calls: dict[Any, _Call],
        busy: list[int],
        todo: list[tuple[int, tuple[int, ...]]],
        clients: Sequence[Client],
        round_num: int,
        exc: BaseException,
        done: dict[int, Any],
    ) -> None:
        """The worker of ``call`` died: blame the call it was running, requeue the others, start a new one."""
        ray = import_ray()
        dead = [c for c in calls.values() if c.worker is call.worker]
        first = min([call, *dead], key=lambda c: c.order)  # calls run in the order sent: it ran the first
        for other in dead:
            calls.pop(next(ref for ref, c in calls.items() if c is other))
        for other in [call, *dead]:
            if other is not first:
                heapq.heappush(todo, (other.positions[0], other.positions))
        ids = [clients[p].client_id for p in first.positions]
        log.warning("round %d: a Ray worker died training client(s) %s; starting a new one", round_num, ids)
        _retry_or_fail(first, todo, clients, done, f"the Ray worker died: {_first_line(exc)}", str(exc))
        ray.kill(call.worker)
        self._workers[call.slot] = self._new_worker()
        busy[call.slot] = 0


@dataclass
class _Call:
    """One request in flight: which worker, for which positions of the round's client list."""

    slot: int
    worker: Any
    positions: tuple[int, ...]
    order: int


def _retry_or_fail(
    call: _Call, todo: list[tuple[int, tuple[int, ...]]], clients: Sequence[Client], done: dict[int, Any], error: str,
    details: str,
) -> None:
    """A failed call of several clients is retried one client per call; a failed single-client call is a failure."""
    if len(call.positions) > 1:
        for position in call.positions:
            heapq.heappush(todo, (position, (position,)))
        return
    position = call.positions[0]
    done[position] = (ClientFailure(client_id=clients[position].client_id, error=error, traceback=details), None)


class _ClientWorker:
    """The Ray actor: a :class:`~federated.ClientRunner` serving every fit sent to it."""

    def __init__(
        self, model: LightningModule, local_epochs: int, trainer_kwargs: dict[str, Any], reuse_trainer: bool,
        threads: int,
    ) -> None:
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)  # Lightning vs torch 2.13
        torch.set_num_threads(threads)
        self.runner = ClientRunner(
            model, local_epochs=local_epochs, trainer_kwargs=trainer_kwargs, reuse_trainer=reuse_trainer
        )
        self._clients: OrderedDict[int, Client] = OrderedDict()
        self._round: tuple[Any, Any] = (None, None)

    def ready(self) -> int:
        return os.getpid()

    def fit(
        self, round_box: list[Any], round_num: int, lr_scale: float, tasks: list[_Task]
    ) -> list[tuple[ClientUpdate | ClientFailure, dict[str, Any]]]:
        """Train ``tasks`` (client id, seed, callback states, [data ref]) in order; outcomes and new states."""
        import ray

        if self._round[0] != round_box[0]:
            self._round = (round_box[0], ray.get(round_box[0]))
        weights, callbacks = self._round[1]
        out = []
        with quiet_lightning():
            for client_id, seed, state, client_box in tasks:
                template = self._clients.pop(client_id, None)
                if template is None:
                    template = ray.get(client_box[0])
                self._clients[client_id] = template
                if len(self._clients) > _CACHED_CLIENTS:
                    self._clients.popitem(last=False)
                client = template.fresh()  # new callback copies, then the driver's states: as if it never left
                client.load_state_dict(state)
                outcome = self.runner.fit(
                    client, weights, round_num=round_num, seed=seed, lr_scale=lr_scale, callbacks=callbacks
                )
                out.append((outcome, client.state_dict()))
        return out


def import_ray() -> Any:
    """``import ray``, or an ``ImportError`` whose one line names the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(MISSING_RAY) from exc
    return ray


def _init_local(ray: Any, num_cpus: int) -> None:
    """Start a local Ray whose workers run at this process's priority.

    Ray starts workers at niceness 15 by default (``RAY_worker_niceness``), below its driver; here
    the workers are the federation's compute, and on a busy machine they would wait behind every
    other process while the driver waits for them.
    """
    saved = os.environ.get(_NICENESS)
    os.environ[_NICENESS] = str(os.nice(0)) if hasattr(os, "nice") else "0"
    try:
        ray.init(num_cpus=num_cpus, include_dashboard=False)
    finally:
        if saved is None:
            os.environ.pop(_NICENESS, None)
        else:
            os.environ[_NICENESS] = saved


def worker_trainer_kwargs(kwargs: Mapping[str, Any], num_gpus: float) -> dict[str, Any]:
    """``kwargs`` with the accelerator pinned to what the worker was granted, on one device.

    Raises:
        ValueError: ``kwargs`` asks for another accelerator, or for more than one device.
    """
    out = dict(kwargs)
    accelerator = out.get("accelerator")
    allowed = _GPU_ACCELERATORS if num_gpus > 0 else _CPU_ACCELERATORS
    if not (accelerator is None or isinstance(accelerator, str)) or accelerator not in allowed:
        grant = f"num_gpus_per_client={num_gpus:g}"
        raise ValueError(
            f"`trainer_kwargs` asks for accelerator={accelerator!r}, but a Ray worker with {grant} trains on "
            f"{'a GPU' if num_gpus > 0 else 'the CPU'}; HINT: set `num_gpus_per_client` on the backend instead"
        )
    if out.get("devices", 1) not in (1, "1", "auto"):
        raise ValueError(
            f"`trainer_kwargs` asks for devices={out['devices']!r}; a Ray worker trains one client on one device. "
            "HINT: more workers (`num_workers`) train more clients at once"
        )
    out["accelerator"] = "gpu" if num_gpus > 0 else "cpu"
    out["devices"] = 1
    return out


def _number(value: Any, name: str, *, integer: bool = False, zero: bool = False) -> Any:
    """``value`` if it is a finite number (an int with ``integer``) above 0 (or 0 with ``zero``)."""
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    bound = ">= 0" if zero else "> 0"
    if (
        isinstance(value, bool)
        or not isinstance(value, kinds)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not zero)
    ):
        raise ValueError(f"`{name}` must be {'an int' if integer else 'a number'} {bound}, got {value!r}")
    return value


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
