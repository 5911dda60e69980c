"""The Ray side of :class:`~federated.RayBackend`: the worker actor and what it is started with.

Nothing here imports ``ray`` at import time: the ``ray`` extra is optional, and :func:`import_ray`
turns its absence into one line that says what to install.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from callbacks import ArgumentError
from federated.client.runner import ClientRunner
from federated.client.trainer_args import quiet_lightning
from federated.messages import ClientEvaluation, ClientFailure, ClientUpdate, EvaluateTask, FitTask

if TYPE_CHECKING:
    from lightning.pytorch import LightningModule

    from federated.client.client import Client
    from federated.messages import StateDict

MISSING_RAY = "backend 'ray' needs the ray extra: pip install 'lightning-bridge[ray]'"

Task = tuple[FitTask | EvaluateTask, dict[str, Any], list[Any] | None]
"""One client task sent to a worker: the task without its weights (sent once per round), the client's
state, ``[ref of its data]`` or ``None``."""

Result = tuple[ClientUpdate | ClientFailure, dict[str, Any] | None, dict[str, Any]]
"""What a worker sends back per client: the outcome (weights apart), the packed weights, the client's state."""

_NICENESS = "RAY_worker_niceness"
_CPU_ACCELERATORS = (None, "auto", "cpu")
_GPU_ACCELERATORS = (None, "auto", "gpu", "cuda")
_NUMPY_DTYPES = {
    torch.float64,
    torch.float32,
    torch.float16,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
    torch.complex64,
    torch.complex128,
}


def import_ray() -> Any:
    """``import ray``, or an ``ImportError`` whose one line names the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(MISSING_RAY) from exc
    return ray


def init_local(ray: Any, num_cpus: int) -> None:
    """Start a local Ray with ``num_cpus`` CPUs, whose workers run at this process's priority.

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


def worker_env(runtime_env: Mapping[str, Any], num_gpus: float) -> dict[str, Any]:
    """The workers' Ray ``runtime_env``: the user's, with what keeps Lightning from hanging in an actor.

    Lightning issue 14292: Lightning 1.7 forked a process to count CUDA devices, which hangs inside
    a Ray actor. These variables are in the worker's environment from its start, so before it
    imports Lightning: ``PL_DISABLE_FORK=1`` (Lightning >= 1.7.4 then never forks), and
    ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (torch counts devices through NVML: no CUDA context, no
    fork; Lightning 2.x sets it too, in ``lightning.fabric``, but only once imported). A worker
    without GPUs also gets ``CUDA_VISIBLE_DEVICES=""``: Ray leaves that variable alone for actors
    without GPUs, so they would see, and ``accelerator="auto"`` would take, GPUs granted to others.
    """
    env_vars = {
        **runtime_env.get("env_vars", {}),
        "PL_DISABLE_FORK": "1",
        "PYTORCH_NVML_BASED_CUDA_CHECK": "1",
        **({"CUDA_VISIBLE_DEVICES": ""} if num_gpus == 0 else {}),
    }
    return {**runtime_env, "env_vars": env_vars}


def worker_trainer_kwargs(kwargs: Mapping[str, Any], num_gpus: float) -> dict[str, Any]:
    """``kwargs`` with the accelerator pinned to what the worker is granted (``cpu``, or ``gpu``), on one device.

    Raises:
        ArgumentError: ``kwargs`` asks for another accelerator, or for more than one device.
    """
    out = dict(kwargs)
    accelerator = out.get("accelerator")
    allowed = _GPU_ACCELERATORS if num_gpus > 0 else _CPU_ACCELERATORS
    if not (accelerator is None or isinstance(accelerator, str)) or accelerator not in allowed:
        raise ArgumentError(
            "trainer_kwargs.accelerator",
            f"{accelerator!r}, but a Ray worker with num_gpus_per_client={num_gpus:g} trains on "
            f"{'a GPU' if num_gpus > 0 else 'the CPU'}; set `num_gpus_per_client` on the backend instead",
        )
    if out.get("devices", 1) not in (1, "1", "auto"):
        raise ArgumentError(
            "trainer_kwargs.devices",
            f"{out['devices']!r}, but a Ray worker trains one client on one device; more workers (`num_workers`) "
            "train more clients at once",
        )
    out["accelerator"] = "gpu" if num_gpus > 0 else "cpu"
    out["devices"] = 1
    return out


def pack(state: StateDict) -> dict[str, Any]:
    """``state`` with NumPy arrays for the tensors NumPy can hold: Ray moves those as raw buffers.

    A torch tensor is pickled through ``torch.save`` (about 0.1 ms a tensor, at each end). Bit for
    bit the same values.
    """
    return {name: t.numpy() if t.dtype in _NUMPY_DTYPES else t for name, t in state.items()}


def unpack(packed: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`pack`, copying out of Ray's read-only buffers."""
    return {name: torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v for name, v in packed.items()}


class ClientWorker:
    """The Ray actor: one :class:`~federated.ClientRunner` (model replica, reused Trainer) for every fit sent to it.

    It keeps the data (and callback template) of every client it has trained, and the current
    round's weights; the driver sends each once.
    """

    def __init__(self, model: LightningModule, settings: dict[str, Any], threads: int) -> None:
        """``settings``: the runner's keyword arguments (:meth:`~federated.backends.FitSetup.runner_settings`,
        and the client algorithms)."""
        # quiet for the worker's life (held: a collected context manager would undo it); setting logger levels
        # at each call would flush the level cache of Ray's many loggers each time
        self._quiet = quiet_lightning()
        self._quiet.__enter__()
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)  # Lightning vs torch 2.13
        torch.set_num_threads(threads)
        self.runner = ClientRunner(model, **settings)
        self._clients: dict[int, Client] = {}
        self._weights: StateDict = {}

    def ready(self) -> int:
        """The worker's process id, once it is built."""
        return os.getpid()

    def fit(self, weights_box: list[Any] | None, tasks: list[Task]) -> Iterator[Result]:
        """Run ``tasks`` in order, yielding per client its outcome, packed weights and new state.

        Called as a Ray streaming generator: each client's result reaches the driver as soon as it
        is trained, so at a deadline or a crash the driver knows which clients finished, which one
        was training and which had not started. ``weights_box`` holds the ref of the round's
        weights in the first call of a round to this worker, ``None`` in the next ones (refs in a
        list: Ray does not resolve nested refs, so the worker fetches only what it lacks).
        """
        import ray

        if weights_box is not None:
            self._weights = ray.get(weights_box[0])
        self._fetch(tasks)
        for task, state, _ in tasks:
            # new callback copies, then the driver's states: the fit cannot depend on this worker's past
            client = self._clients[task.client_id].fresh(state)
            outcome = self.runner.fit(client, dataclasses.replace(task, weights=self._weights))  # type: ignore[arg-type]
            packed = None
            if isinstance(outcome, ClientUpdate) and outcome.weights is not None:
                packed, outcome.weights = pack(outcome.weights), None
            yield outcome, packed, client.state_dict()

    def evaluate(self, weights_box: list[Any], tasks: list[Task]) -> list[ClientEvaluation | ClientFailure]:
        """Evaluate ``weights_box[0]``'s weights on each task's client, in order."""
        import ray

        weights = ray.get(weights_box[0])
        self._fetch(tasks)
        out: list[ClientEvaluation | ClientFailure] = []
        for task, state, _ in tasks:
            client = self._clients[task.client_id].fresh(state)
            out.append(self.runner.evaluate(client, dataclasses.replace(task, weights=weights)))  # type: ignore[arg-type]
        return out

    def _fetch(self, tasks: list[Task]) -> None:
        """One fetch of the data of the clients this worker sees for the first time."""
        import ray

        new = [(task.client_id, box[0]) for task, _, box in tasks if box is not None]
        if new:
            self._clients.update(zip([c for c, _ in new], ray.get([ref for _, ref in new]), strict=True))
