"""A CLI run's output directory: the files it owns there (its manifest), and one run at a time (its lock).

A run writes its manifest, ``.run-manifest.json``, before any other file: the name patterns of
the files its writers write, by folder. A later run knows from it which files there a run of
this project wrote. A new run (without ``--resume``) into a directory holding any other file is
refused unless ``--overwrite`` is given; it then removes the files the manifest names, and only
those. ``.run.lock`` is held (``flock``) while a run writes: a second run there is refused, naming
the first; the kernel releases the lock of a process that dies, so a killed run's lock file
never blocks a resume.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any

from callbacks import ConfigError, MetricsLogger, ModelCheckpoint, TensorBoard
from callbacks.arguments import echo
from callbacks.files import atomic_write
from federated.app.writer_paths import CHECKPOINTS, RUN_FILES, within
from federated.checkpoint import HISTORY_LOG

__all__ = ["LOCK", "MANIFEST", "check_owned", "check_unlocked", "locked", "outputs", "remove_earlier", "write_manifest"]

MANIFEST = ".run-manifest.json"
LOCK = ".run.lock"
FORMAT = "lightning_bridge.run/1"

Outputs = dict[str, list[str]]
"""File-name patterns (regular expressions) by folder, relative to the output directory."""

_EVENTS = r"events\.out\.tfevents\.\d+\..+"
"""The names of the event files torch's ``SummaryWriter`` writes."""


def outputs(callbacks: Sequence[Any], out: str) -> Outputs:
    """The files the run writes under ``out``: name patterns by folder relative to ``out``."""
    history = rf"{re.escape(HISTORY_LOG)}(\.tmp\d*)?"
    found: Outputs = {
        ".": [rf"{re.escape(name)}(\.tmp\d*)?" for name in RUN_FILES],
        CHECKPOINTS: [r"last\.ckpt(\.tmp\d*)?", history],
    }
    for callback in callbacks:
        if isinstance(callback, MetricsLogger) and callback.path is not None:
            where, names = os.path.dirname(callback.path), [rf"{re.escape(os.path.basename(callback.path))}(\.tmp\d*)?"]
        elif isinstance(callback, TensorBoard):
            where, names = callback.log_dir, [_EVENTS]
        elif isinstance(callback, ModelCheckpoint):
            where, names = callback.save_dir, [r"(last|best|round=\d+)\.ckpt(\.tmp\d*)?", history]
        else:
            continue
        if within(where or ".", out):
            found.setdefault(os.path.relpath(where or ".", out), []).extend(names)
    return {where: sorted(set(names)) for where, names in found.items()}


def read_manifest(out: str) -> Outputs | None:
    """The outputs the manifest in ``out`` names, or ``None`` where there is none (or it is unreadable)."""
    try:
        with open(os.path.join(out, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
        found = manifest["outputs"]
        if manifest.get("format") == FORMAT and all(isinstance(v, list) for v in found.values()):
            return {str(k): [str(n) for n in v] for k, v in found.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def write_manifest(out: str, written: Outputs) -> None:
    """Record ``written`` as the run's files in ``out``, with those the manifest there named already."""
    merged = {k: list(v) for k, v in (read_manifest(out) or {}).items()}
    for where, names in written.items():
        merged[where] = sorted({*merged.get(where, []), *names})
    with atomic_write(os.path.join(out, MANIFEST), encoding="utf-8") as f:
        json.dump({"format": FORMAT, "outputs": merged}, f, indent=1, sort_keys=True)


def check_owned(out: str, written: Outputs, fresh: bool, overwrite: bool) -> None:
    """Refuse to write in ``out`` over files no run of this project wrote there.

    A fresh run is refused at any such file under ``out``; a resumed one where it would write
    over one (a resume of a directory with no manifest continues: its checkpoint says whose it is).

    Raises:
        ConfigError: ``out`` holds such a file, and ``overwrite`` is not set; at ``output_dir``.
    """
    if overwrite or not os.path.isdir(out):
        return
    owned = read_manifest(out)
    if owned is None and not fresh:
        return
    mine = _patterns(owned or {})
    at_risk = None if fresh else _patterns(written)
    for relative in _files_under(out):
        if relative in (MANIFEST, LOCK) or _matches(mine, relative) or (at_risk and not _matches(at_risk, relative)):
            continue
        way = "--resume auto to continue the run there, " if owned is not None or fresh else ""
        raise ConfigError(
            f"{echo(out)} holds {echo(relative)}, which no run of this project wrote there; it would be "
            f"{'left beside' if fresh else 'replaced by'} this run's outputs: use {way}another output_dir, or "
            "--overwrite to write the outputs there anyway (files of the same names are replaced)",
            "output_dir",
        )


def remove_earlier(out: str, written: Outputs) -> None:
    """Remove the files an earlier run wrote in ``out`` (its manifest's) and those at this run's names.

    Folders and every other file stay.
    """
    patterns = _patterns(read_manifest(out) or {})
    for where, names in _patterns(written).items():
        patterns[where] = [*patterns.get(where, []), *names]
    for relative in _files_under(out):
        if relative not in (MANIFEST, LOCK) and _matches(patterns, relative):
            os.remove(os.path.join(out, relative))


@contextlib.contextmanager
def locked(out: str) -> Iterator[None]:
    """Hold the lock of the run directory ``out`` while the block runs.

    Raises:
        ConfigError: Another process holds it; naming that process.
    """
    with open(os.path.join(out, LOCK), "a+", encoding="utf-8") as f:
        _take(f, out)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                f"{' '.join(sys.argv)[:200]}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def check_unlocked(out: str) -> None:
    """Refuse ``out`` while another run holds its lock; take nothing, write nothing.

    Raises:
        ConfigError: Another process holds the lock; naming that process.
    """
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), open(os.path.join(out, LOCK), "rb") as f:
        _take(f, out)
        fcntl.flock(f, fcntl.LOCK_UN)


def _take(f: IO[Any], out: str) -> None:
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read(300)
        holder = holder.decode(errors="replace") if isinstance(holder, bytes) else holder
        raise ConfigError(
            f"{echo(out)} is in use by another run ({holder.strip() or 'a process'}); wait for it to end, "
            "or choose another output_dir",
            "output_dir",
        ) from None


def _files_under(out: str) -> Iterator[str]:
    """The paths, relative to ``out``, of the files and links under it (links are not followed)."""
    for directory, folders, files in os.walk(out):
        names = [*files, *(d for d in folders if os.path.islink(os.path.join(directory, d)))]
        for name in sorted(names):
            yield os.path.relpath(os.path.join(directory, name), out)


def _patterns(written: Mapping[str, list[str]]) -> dict[str, list[str]]:
    return {os.path.normpath(where): list(names) for where, names in written.items()}


def _matches(patterns: Mapping[str, list[str]], relative: str) -> bool:
    where, name = os.path.split(relative)
    return any(re.fullmatch(n, name) for n in patterns.get(os.path.normpath(where or "."), []))
