"""Local training of one client at a time with ``lightning.Trainer.fit``, cheaply and reproducibly."""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import logging
import random
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback as LightningCallback
from lightning.pytorch.strategies import SingleDeviceStrategy

from callbacks import ArgumentError
from callbacks.arguments import check_arguments, echo, one_line
from federated.backends.client_probe import ClientProbe
from federated.results import ClientEvaluation, ClientFailure, ClientUpdate
from lightning_bridge.metrics import floats

if TYPE_CHECKING:
    from federated.client import Client
    from federated.results import StateDict

__all__ = [
    "CLIENT_TRAINER_DEFAULTS",
    "ClientRunner",
    "check_one_device",
    "check_trainer_kwargs",
    "client_failure",
    "derive_seed",
    "quiet_lightning",
    "seed_everything",
    "validation_trainer",
]

CLIENT_TRAINER_DEFAULTS: dict[str, Any] = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "num_sanity_val_steps": 0,
    "devices": 1,
}
"""What a client's ``lightning.Trainer`` does without: no logger, checkpoints, progress bar or summary."""

_RESERVED = ("max_epochs", "min_epochs")

KEYS_CHECKED_ALONE = ("accelerator", "devices", "num_nodes", "strategy")
"""``lightning.Trainer`` arguments tried one by one (each with those before it), so that a refusal names its key."""

ONE_DEVICE = (
    "a client's fit runs on one device in this process (devices: 1, the default, or [i], device i); "
    "for clients in parallel use the Ray backend"
)
"""What a client's ``lightning.Trainer`` may use, said when it is asked for more."""


class ClientRunner:
    """Trains clients one after the other in this process, each with ``lightning.Trainer.fit``.

    What can be reused is: one working copy of the LightningModule receives each client's
    starting weights with ``load_state_dict``, and one ``lightning.Trainer`` serves every fit
    (NVFlare's Lightning client keeps one trainer too): building a ``Trainer`` scans the installed
    packages' entry points, which costs more than a small client's whole epoch. Before each fit
    the trainer gets fresh fit loops and this client's callbacks (native ones through its adapter,
    Lightning ones as they are) and loggers; the loggers' step counts on across the client's fits.
    A trainer that launches processes (DDP) is built anew for each fit instead, and so is the
    trainer after a failed fit.

    Before each fit, Python's, NumPy's and torch's random generators (and the generator of the
    client loader's sampler, if it has one) are seeded with ``seed``, so a client's training does
    not depend on what ran before it: a resumed run trains exactly as an uninterrupted one.

    Args:
        model: The global model's template; the runner trains a deep copy of it.
        local_epochs: Epochs per client fit.
        trainer_kwargs: ``lightning.Trainer`` arguments, merged over
            :data:`CLIENT_TRAINER_DEFAULTS`; ``callbacks`` are added to every client fit.
            Defaults to none.
        reuse_trainer: Keep one ``Trainer`` for all fits. Defaults to ``True``.
        keep_optimizer_state: Start each client's optimizers and LR schedulers from the states
            its previous fit left (``Client.optimizer_state``), and store the new ones there.
            Defaults to ``False``.
        local_keys: Patterns of the state-dict names each client keeps (``Client.local_weights``):
            its fit starts from its own values of them, and its update leaves them out.
            Defaults to none.

    Raises:
        ValueError: An unknown ``lightning.Trainer`` argument, or ``max_epochs``/``min_epochs``
            (use ``local_epochs``).

    Example:
        >>> from federated.models import MLP
        >>> runner = ClientRunner(MLP(hidden=8), local_epochs=1)
        >>> runner.trainer_kwargs["max_epochs"], runner.trainer_kwargs["logger"]
        (1, False)
    """

    def __init__(
        self,
        model: LightningModule,
        *,
        local_epochs: int,
        trainer_kwargs: Mapping[str, Any] | None = None,
        reuse_trainer: bool = True,
        keep_optimizer_state: bool = False,
        local_keys: Sequence[str] = (),
    ) -> None:
        user = dict(trainer_kwargs or {})
        check_trainer_kwargs(user)
        self.module = copy.deepcopy(model)
        self.reuse_trainer = reuse_trainer
        self.keep_optimizer_state = keep_optimizer_state
        self.local_keys = tuple(local_keys)
        self._validator: Trainer | None = None
        self.extra_callbacks: list[Any] = _as_list(user.pop("callbacks", None))
        self.trainer_kwargs: dict[str, Any] = {**CLIENT_TRAINER_DEFAULTS, **user, "max_epochs": local_epochs}
        self._probe = ClientProbe()
        self._trainer: Trainer | None = None
        self._base_callbacks: list[Any] = []

    def fit(
        self,
        client: Client,
        weights: StateDict,
        *,
        round_num: int,
        seed: int,
        lr_scale: float = 1.0,
        callbacks: Sequence[LightningCallback] = (),
    ) -> ClientUpdate | ClientFailure:
        """Train ``client`` from ``weights``; return its update, or the failure if it raised or diverged.

        Args:
            client: The client to train.
            weights: The global weights to start from.
            round_num: The round, for the failure message.
            seed: The seed of this client's fit in this round.
            lr_scale: Factor on every learning rate of the client's optimizers (and its schedulers'
                base rates) for this fit. Defaults to ``1.0``.
            callbacks: Lightning callbacks added to this fit only, e.g. the strategy's
                (``Strategy.client_callbacks``). Defaults to none.
        """
        probe = self._probe
        try:
            self._load(weights, client)
            seed_everything(seed, client.data)
            probe.start(lr_scale, keep=self.keep_optimizer_state, restore=client.optimizer_state)
            trainer = self._trainer_for(client, callbacks)
            trainer.fit(self.module, train_dataloaders=client.data, val_dataloaders=client.val_data)
            if client.loggers:
                client.logged_steps = trainer.fit_loop.epoch_loop._batches_that_stepped
            state = {name: t.detach().to("cpu", copy=True) for name, t in self.module.state_dict().items()}
        except (Exception, SystemExit) as exc:
            self._trainer = None  # do not reuse a trainer left in an unknown state
            return client_failure(client.client_id, exc)
        bad = non_finite(state)
        if bad:
            names = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            return ClientFailure(client_id=client.client_id, error=f"non-finite weights in round {round_num}: {names}")
        if self.keep_optimizer_state:
            client.optimizer_state = probe.optimizer_state
        if self.local_keys:
            local = [name for name in state if any(fnmatch.fnmatchcase(name, p) for p in self.local_keys)]
            client.local_weights = {name: state.pop(name) for name in local}
        epochs = probe.epoch_metrics
        return ClientUpdate(
            client_id=client.client_id,
            num_samples=client.num_samples,
            weights=state,
            metrics=dict(epochs[-1]) if epochs else {},
            epoch_metrics=epochs,
        )

    def evaluate(self, client: Client, weights: StateDict, *, seed: int) -> ClientEvaluation | ClientFailure:
        """Evaluate ``weights`` (with the client's ``local_weights``) on ``client.val_data`` with ``Trainer.validate``.

        Args:
            client: The client; it must have ``val_data``.
            weights: The global weights.
            seed: The seed of this evaluation.
        """
        try:
            self._load(weights, client)
            seed_everything(seed)
            if self._validator is None:
                self._validator = validation_trainer(self.trainer_kwargs)
            out = self._validator.validate(self.module, dataloaders=client.val_data, verbose=False)
        except (Exception, SystemExit) as exc:
            self._validator = None
            return client_failure(client.client_id, exc)
        return ClientEvaluation(client.client_id, client.num_val_samples, floats(out[0]) if out else {})

    def _load(self, weights: StateDict, client: Client) -> None:
        self.module.load_state_dict(weights)
        if client.local_weights:
            self.module.load_state_dict(client.local_weights, strict=False)

    def _trainer_for(self, client: Client, callbacks: Sequence[LightningCallback] = ()) -> Trainer:
        adapter = client.adapter
        trainer = self._trainer
        if trainer is None:
            trainer = Trainer(**self.trainer_kwargs, callbacks=[*self.extra_callbacks, self._probe])
            self._base_callbacks = list(trainer.callbacks)  # type: ignore[attr-defined]
            if self.reuse_trainer and trainer.strategy.launcher is None and trainer.world_size == 1:
                self._trainer = trainer
        else:
            _fresh_fit_loop(trainer, self.trainer_kwargs)
        trainer.callbacks = [  # type: ignore[attr-defined]  # Lightning's callback connector sets it
            *self._base_callbacks, *callbacks, *client.lightning_callbacks, *([adapter] if adapter is not None else [])
        ]
        # the client's own loggers, stepping on from where its previous fit left them
        trainer.loggers = client.loggers
        trainer.fit_loop.epoch_loop._batches_that_stepped = client.logged_steps
        return trainer


def client_failure(client_id: int, exc: BaseException) -> ClientFailure:
    """The failure of a client whose fit or evaluation raised ``exc``, with its traceback.

    A ``sys.exit`` in the client's code (its dataset, its ``training_step``) is the client's failure
    like any exception, not the end of the federation. A Ctrl-C is not: Lightning turns it into
    ``SystemExit(1)`` raised while handling the ``KeyboardInterrupt``, which is raised again, to
    stop the run.

    Raises:
        SystemExit: ``exc``, when it stands for a Ctrl-C.
    """
    error = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SystemExit):
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise exc
        error += " (the client's code called sys.exit)"
    return ClientFailure(client_id=client_id, error=error, traceback=traceback.format_exc())


def validation_trainer(trainer_kwargs: Mapping[str, Any]) -> Trainer:
    """A ``lightning.Trainer`` for ``validate`` with the clients' arguments, less their callbacks."""
    kwargs = {k: v for k, v in trainer_kwargs.items() if k != "callbacks"}
    return Trainer(**{**CLIENT_TRAINER_DEFAULTS, **kwargs})


def seed_everything(seed: int, loader: Any = None) -> None:
    """Seed Python's, NumPy's and torch's generators, and ``loader``'s sampler generator if it has one."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    # the CPU generator directly: `torch.manual_seed` also queues lazy CUDA/XPU/MTIA seeding, formatting
    # a stack trace each time (about 1 ms, more than a small client's epoch)
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)
    generator = getattr(getattr(loader, "sampler", None), "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(seed)


def non_finite(state: StateDict) -> list[str]:
    """The names of floating tensors of ``state`` that hold a NaN or an infinity."""
    names = [n for n, t in state.items() if t.is_floating_point() or t.is_complex()]
    if not names:
        return []
    finite = torch.stack([torch.isfinite(state[n]).all() for n in names]).tolist()
    return [n for n, ok in zip(names, finite, strict=True) if not ok]


def check_trainer_kwargs(kwargs: Mapping[str, Any]) -> None:
    """Refuse ``lightning.Trainer`` arguments the federation sets itself, and names or types the Trainer does not take.

    Raises:
        ArgumentError: ``max_epochs`` or ``min_epochs`` (set from ``local_epochs``), a ``max_steps``
            that is no int, a ``devices`` of ``"auto"`` or ``-1`` (one device: ``1`` or ``[i]``), or a
            ``logger`` (``client_loggers`` gives each client its own).
        ConfigError: A name ``lightning.Trainer`` does not take, or a value not of its annotated type
            (at ``trainer_kwargs.<name>``).
    """
    for name in _RESERVED:
        if name in kwargs:
            problem = "is set by the federation from `local_epochs` (`clients.local_epochs` in YAML)"
            raise ArgumentError(f"trainer_kwargs.{name}", problem)
    steps = kwargs.get("max_steps", -1)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < -1:
        problem = f"{echo(steps)}; accepted: an int >= 0, or -1 (no limit, the default: `local_epochs` ends the fit)"
        raise ArgumentError("trainer_kwargs.max_steps", problem)
    check_arguments(Trainer, kwargs, "trainer_kwargs")
    if "devices" in kwargs:
        _check_devices(kwargs["devices"])
    if kwargs.get("logger") not in (None, False):
        raise ArgumentError(
            "trainer_kwargs.logger",
            f"{echo(kwargs['logger'])} would be one logger for every client's fit and the server's evaluation; "
            "give `client_loggers` instead (each client gets its own copy, logging apart)",
        )


def _check_devices(devices: Any) -> None:
    """Refuse a ``devices`` of a client fit that depends on the machine: ``"auto"`` or ``-1``.

    Both take every device of the machine the client lands on, one on a CPU and as many as it has
    GPUs elsewhere, so a federation that fits on one machine would not on the next. A number of
    devices other than one is refused where the Trainer is tried (:func:`check_one_device`).
    """
    if isinstance(devices, (str, int)) and not isinstance(devices, bool) and str(devices).strip() in ("auto", "-1"):
        problem = f"{echo(devices)} takes every device of the machine that runs the client; {ONE_DEVICE}"
        raise ArgumentError("trainer_kwargs.devices", problem)


def check_one_device(kwargs: Mapping[str, Any]) -> None:
    """Refuse client ``lightning.Trainer`` arguments Lightning rejects, or that ask for more than one device.

    Lightning checks values (accelerator, precision, devices) as it builds a ``Trainer``; one is
    built with the keys of :data:`KEYS_CHECKED_ALONE` added one at a time, so a refusal names its
    key, then with all. A client's fit is one process on one device: a trainer that would use
    several devices or nodes, or launch processes (``ddp``, ``fsdp``, ...), is refused.

    Raises:
        ArgumentError: At ``trainer_kwargs.<key>``, saying what Lightning refused or why one device is needed.
    """
    keys = [k for k in KEYS_CHECKED_ALONE if k in kwargs]
    for i, key in enumerate(keys):
        _client_trainer({k: kwargs[k] for k in keys[: i + 1]}, f"trainer_kwargs.{key}")
    trainer = _client_trainer(kwargs, "trainer_kwargs")
    if trainer.num_nodes != 1:
        raise ArgumentError("trainer_kwargs.num_nodes", f"{trainer.num_nodes} nodes; {ONE_DEVICE}")
    if trainer.num_devices != 1:
        what = f"{echo(kwargs.get('devices'))} means {trainer.num_devices} devices"
        raise ArgumentError("trainer_kwargs.devices", f"{what}; {ONE_DEVICE}")
    if not isinstance(trainer.strategy, SingleDeviceStrategy):
        what = f"{echo(kwargs.get('strategy'))} is {type(trainer.strategy).__name__}, a multi-process strategy"
        raise ArgumentError("trainer_kwargs.strategy", f"{what}; {ONE_DEVICE}")


def _client_trainer(kwargs: Mapping[str, Any], argument: str) -> Trainer:
    """The ``lightning.Trainer`` of a client fit with ``kwargs``; what Lightning refuses is an error of ``argument``."""
    try:
        with quiet_lightning():
            return validation_trainer(kwargs)
    except Exception as exc:
        raise ArgumentError(argument, f"lightning.Trainer refuses it: {type(exc).__name__}: {one_line(exc)}") from exc


def _fresh_fit_loop(trainer: Trainer, kwargs: Mapping[str, Any]) -> None:
    """Give a used trainer new fit loops (epoch and step counters from zero), as ``Trainer.__init__`` does."""
    from lightning.pytorch.loops.fit_loop import _FitLoop
    from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop

    trainer.fit_loop = _FitLoop(trainer, min_epochs=kwargs.get("min_epochs"), max_epochs=kwargs["max_epochs"])
    trainer.fit_loop.epoch_loop = _TrainingEpochLoop(
        trainer, min_steps=kwargs.get("min_steps"), max_steps=kwargs.get("max_steps", -1)
    )


def _as_list(callbacks: Any) -> list[Any]:
    if callbacks is None:
        return []
    if isinstance(callbacks, LightningCallback):
        return [callbacks]
    return list(callbacks)


def derive_seed(*words: int) -> int:
    """A 63-bit seed from a path in the seed tree, independent of everything run before."""
    low, high = np.random.SeedSequence(list(words)).generate_state(2, dtype=np.uint32).tolist()
    return ((high & 0x7FFFFFFF) << 32) | low


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence what Lightning says at every client fit (its info lines, the few-workers hint)."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*but have no `val_dataloader`.*")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
