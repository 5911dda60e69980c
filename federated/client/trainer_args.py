"""The ``lightning.Trainer`` of a client fit: what it does without, what it may not be given, and quiet."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.strategies import SingleDeviceStrategy

from callbacks import ArgumentError
from callbacks.arguments import check_arguments, echo, one_line

__all__ = [
    "CLIENT_TRAINER_DEFAULTS",
    "ONE_DEVICE",
    "check_one_device",
    "check_trainer_kwargs",
    "fresh_fit_loop",
    "quiet_lightning",
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


def validation_trainer(trainer_kwargs: Mapping[str, Any]) -> Trainer:
    """A ``lightning.Trainer`` for ``validate`` with the clients' arguments, less their callbacks."""
    kwargs = {k: v for k, v in trainer_kwargs.items() if k != "callbacks"}
    return Trainer(**{**CLIENT_TRAINER_DEFAULTS, **kwargs})


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


def fresh_fit_loop(trainer: Trainer, kwargs: Mapping[str, Any]) -> None:
    """Give a used trainer new fit loops (epoch and step counters from zero), as ``Trainer.__init__`` does."""
    from lightning.pytorch.loops.fit_loop import _FitLoop
    from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop

    trainer.fit_loop = _FitLoop(trainer, min_epochs=kwargs.get("min_epochs"), max_epochs=kwargs["max_epochs"])
    trainer.fit_loop.epoch_loop = _TrainingEpochLoop(
        trainer, min_steps=kwargs.get("min_steps"), max_steps=kwargs.get("max_steps", -1)
    )


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
