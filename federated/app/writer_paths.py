"""Where a CLI run's writers may write: under ``output_dir``, each file to one owner.

A writer's path (a callback's ``save_dir``, ``log_dir`` or ``path``) that is relative resolves
under ``output_dir``; an absolute one is taken only when it lies there too. Either way it may not
lead out of ``output_dir``, through ``..`` or through a symbolic link. :func:`claims` lists what
every writer of a run writes, the run's own files included (``config.yaml``, ``final_weights.pt``,
``checkpoints/last.ckpt``, ``checkpoints/history.jsonl``); :func:`check_claims` refuses two owners
of one file, a file that must be a folder (or the reverse), and a folder that leads elsewhere,
before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from callbacks import ConfigError, MetricsLogger, ModelCheckpoint, TensorBoard
from callbacks.arguments import echo
from federated.checkpoint import HISTORY_LOG

__all__ = [
    "CHECKPOINTS",
    "PATH_ARGUMENTS",
    "RUN_FILES",
    "Claim",
    "check_claims",
    "claims",
    "place_defaults",
    "resolve_writer_path",
    "within",
]

PATH_ARGUMENTS = ("save_dir", "log_dir", "path")
"""Callback arguments that name files or folders; they resolve under ``output_dir``."""

CHECKPOINTS = "checkpoints"
"""The round loop's folder under ``output_dir``: ``last.ckpt`` and ``history.jsonl``."""

RUN_FILES = {"config.yaml": "the resolved config", "final_weights.pt": "the final weights"}
"""The files the run itself writes directly under ``output_dir``, with what they are."""


def within(path: str, directory: str) -> bool:
    """Whether ``path`` is ``directory`` or lies inside it, symbolic links resolved."""
    path, directory = os.path.realpath(path), os.path.realpath(directory)
    return os.path.commonpath([path, directory]) == directory


def resolve_writer_path(value: str, out: str, key: str) -> str:
    """``value``, a writer's path argument at config key ``key``, as the path it writes under ``out``.

    Raises:
        ConfigError: ``value`` is empty, is ``output_dir`` itself, or leads outside it (``..``, an
            absolute path elsewhere, a symbolic link).
    """
    if not value.strip():
        raise ConfigError(f"{echo(value)} names nothing; write a path below output_dir, e.g. 'logs'", key)
    path = value if os.path.isabs(value) else os.path.join(out, value)
    if os.path.normpath(path) == os.path.normpath(out) or (within(out, path) and within(path, out)):
        raise ConfigError(
            f"{echo(value)} is output_dir itself, among the run's own files (config.yaml, metrics.csv, ...); "
            "write a path below it, e.g. 'logs'",
            key,
        )
    if not within(path, out):
        absolute = os.path.isabs(value)
        how = "an absolute path is taken only under output_dir" if absolute else "relative paths resolve there"
        linked = not absolute and os.pardir not in os.path.normpath(value).split(os.sep)
        link = f", through a symbolic link to {echo(os.path.realpath(path))}" if linked else ""
        raise ConfigError(
            f"{echo(value)} leads outside output_dir{link}; writers write only under output_dir ({how}): "
            "write a path below it",
            key,
        )
    return path


@dataclass(frozen=True)
class Claim:
    """A file or folder a run writes, and who writes it.

    Example:
        >>> Claim("runs/x/config.yaml", "file", "the resolved config").kind
        'file'
    """

    path: str
    kind: Literal["file", "dir"]
    owner: str
    """Who writes it, as an error message names it."""
    key: str | None = None
    """The config key that put it there; ``None`` for the run's own files."""
    checkpoints: bool = False
    """A federation checkpoint folder's file: the round loop and a ``model_checkpoint`` may share it."""


def claims(callbacks: Sequence[Any], client_callbacks: Sequence[Any], configured: int, out: str) -> list[Claim]:
    """Every file and folder the run writes under ``out``: its own first, then its writers'.

    ``callbacks[:configured]`` are the config's ``callbacks`` entries in order; the rest are the
    run's own writers (its ``metrics.csv`` and ``tensorboard/``).
    """
    ckpt = os.path.join(out, CHECKPOINTS)
    found = [Claim(os.path.join(out, name), "file", f"{what} ({name})") for name, what in RUN_FILES.items()]
    found += [
        Claim(ckpt, "dir", "the round loop (checkpoints/)", checkpoints=True),
        Claim(os.path.join(ckpt, "last.ckpt"), "file", "the round loop's checkpoint", checkpoints=True),
        Claim(os.path.join(ckpt, HISTORY_LOG), "file", "the round loop's history log", checkpoints=True),
    ]
    for i, callback in enumerate(callbacks):
        key = f"callbacks[{i}]" if i < configured else None
        found += _claims_of(callback, key)
    for i, callback in enumerate(client_callbacks):
        found += _claims_of(callback, f"client_callbacks[{i}]")
    return found


def _claims_of(callback: Any, key: str | None) -> Iterator[Claim]:
    name = type(callback).__name__
    for argument in PATH_ARGUMENTS:
        path = getattr(callback, argument, None)
        if not isinstance(path, str):
            continue
        where = f"{key}.args.{argument}" if key else None
        owner = f"`{where}` ({name})" if where else f"the run's {name} ({os.path.basename(path)})"
        if isinstance(callback, ModelCheckpoint) and argument == "save_dir":
            yield Claim(path, "dir", owner, where, checkpoints=True)
            for file in ("last.ckpt", "best.ckpt", HISTORY_LOG):
                yield Claim(os.path.join(path, file), "file", owner, where, checkpoints=True)
        elif isinstance(callback, MetricsLogger) or (argument == "path" and not isinstance(callback, TensorBoard)):
            yield Claim(path, "file", owner, where)
        else:
            yield Claim(path, "dir", owner, where)


def check_claims(found: Sequence[Claim], out: str) -> None:
    """Refuse what the run's writers cannot write as configured, before anything is written.

    Raises:
        ConfigError: Two owners of one file, a file inside another's file, a folder where a file
            goes or the reverse, or a folder on the way that leads outside ``out``; at the config
            key of the later claim (``output_dir`` for the run's own files).
    """
    for j, claim in enumerate(found):
        for other in found[:j]:
            if other.owner != claim.owner and _clash(claim, other):
                raise ConfigError(
                    f"{echo(_shown(claim.path, out))} is written by {other.owner} already, and by {claim.owner}; "
                    "write another path",
                    claim.key or other.key or "output_dir",
                )
    for claim in found:
        _check_on_disk(claim, out)


def _clash(a: Claim, b: Claim) -> bool:
    same = os.path.normpath(a.path) == os.path.normpath(b.path)
    if a.kind == b.kind == "file":
        return same and not (a.checkpoints and b.checkpoints)
    if a.kind != b.kind and same:
        return True
    inside = [(x, y) for x, y in ((a, b), (b, a)) if y.kind == "file"]
    return any(_below(x.path, y.path) for x, y in inside)


def _below(path: str, parent: str) -> bool:
    """Whether ``path`` lies inside the folder ``parent`` (not ``parent`` itself)."""
    path, parent = os.path.abspath(path), os.path.abspath(parent)
    return path != parent and os.path.commonpath([path, parent]) == parent


def _check_on_disk(claim: Claim, out: str) -> None:
    """Refuse ``claim`` where what is on disk already is in its way."""
    key = claim.key or "output_dir"
    shown = echo(_shown(claim.path, out))
    if not within(claim.path, out):
        raise ConfigError(
            f"{shown} leads outside output_dir, through a symbolic link to {echo(os.path.realpath(claim.path))}, "
            f"where {claim.owner} writes; remove the link, or choose another output_dir",
            key,
        )
    if claim.kind == "file" and os.path.isdir(claim.path):
        raise ConfigError(f"{shown} is a folder, where a file of {claim.owner} goes; move it away", key)
    if claim.kind == "dir" and os.path.lexists(claim.path) and not os.path.isdir(claim.path):
        raise ConfigError(f"{shown} is a file, where a folder of {claim.owner} goes; move it away", key)
    parent = os.path.dirname(os.path.normpath(claim.path))
    while parent and os.path.normpath(parent) != os.path.normpath(out) and within(parent, out):
        if os.path.lexists(parent) and not os.path.isdir(parent):
            shown_parent = echo(_shown(parent, out))
            raise ConfigError(f"{shown_parent} is a file, where a folder of {claim.owner} goes; move it away", key)
        parent = os.path.dirname(parent)


def _shown(path: str, out: str) -> str:
    """``path`` as a message shows it: relative to ``out`` when it lies there."""
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(out))
    return path if relative.startswith(os.pardir) else relative


def place_defaults(callbacks: Sequence[Any], entries: Sequence[Any], out: str, path: str) -> None:
    """Resolve under ``out`` the path arguments the entries at ``path`` left to their defaults.

    ``callbacks[i]`` is built from ``entries[i]``, whose given path arguments already resolve
    under ``out``; a default (``ModelCheckpoint``'s ``./checkpoints``) would otherwise be
    relative to the working directory.

    Raises:
        ConfigError: A default that cannot resolve under ``out``.
    """
    for i, (callback, entry) in enumerate(zip(callbacks, entries, strict=True)):
        given = entry.get("args") or {} if isinstance(entry, dict) else {}
        for argument in PATH_ARGUMENTS:
            value = getattr(callback, argument, None)
            if isinstance(value, str) and argument not in given:
                setattr(callback, argument, resolve_writer_path(value, out, f"{path}[{i}].args.{argument}"))
