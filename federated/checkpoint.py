"""The federation checkpoint: written atomically, read with ``torch.load(weights_only=True)``.

Contents (tensors and primitives only)::

    format              "federated/3"
    round               the last completed round
    weights             the global state dict after that round
    strategy            the strategy's state_dict() (SCAFFOLD's control variate c)
    callbacks           {state_key: state} of the server callbacks with state
    clients             {client_id: Client.state_dict()}: each client's callback states, and its
                        optimizer states, local weights and client algorithms' states (SCAFFOLD's
                        c_i; not under Flower, where they stay on the SuperNodes) when it keeps them
    rng                 Python, NumPy and torch (and CUDA) generator states
    last_round          RoundResult.to_dict() of that round (None before round 1)
    trainer             should_stop, client_lr_scale, seed, num_clients

and what ``LightningModule.load_from_checkpoint`` reads (:func:`lightning_fields`)::

    state_dict                  the same tensors as ``weights`` (stored once)
    pytorch-lightning_version   the Lightning version that wrote the file
    hyper_parameters            the model's ``hparams``, when it saved them
    hparams_name                how its ``save_hyperparameters`` named them, when it did

The history of the rounds is not in the file, so that writing it costs the same at every round:
it is the first ``round`` lines of the :class:`HistoryLog` in the same folder (``history.jsonl``),
which every checkpoint of that folder shares (:func:`load_history`); ``last_round`` checks that
the log is theirs.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import pickle
import random
import re
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import numpy as np
import torch

from callbacks.callback import stateful_callbacks
from callbacks.files import atomic_write
from federated.exceptions import CheckpointError

if TYPE_CHECKING:
    from federated.results import RoundResult

__all__ = [
    "FORMAT",
    "HISTORY_LOG",
    "HistoryLog",
    "callback_states",
    "get_rng_states",
    "lightning_fields",
    "load_callback_states",
    "load_checkpoint",
    "load_history",
    "save_checkpoint",
    "set_rng_states",
]

log = logging.getLogger(__name__)

FORMAT = "federated/3"
HISTORY_LOG = "history.jsonl"


def save_checkpoint(path: str | os.PathLike[str], checkpoint: dict[str, Any]) -> str:
    """Write ``checkpoint`` to ``path`` atomically (a temporary file in the same folder, then a rename).

    A crash leaves either the previous file or the new one under ``path``, never half of one.
    Parent folders are created. Returns ``path`` as a string.
    """
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with atomic_write(path, "wb") as f:
        torch.save({"format": FORMAT, **checkpoint}, f)
    return path


def load_checkpoint(path: str | os.PathLike[str], mmap: bool = False) -> dict[str, Any]:
    """Read a federation checkpoint with ``torch.load(weights_only=True)``.

    Args:
        path: The checkpoint file.
        mmap: Map the tensors' storage from the file instead of reading it: the checkpoint's round,
            shapes and states cost the pickle alone. Defaults to ``False``.

    Raises:
        FileNotFoundError: No file at ``path``.
        CheckpointError: The file is damaged (truncated, say), is not a federation checkpoint of
            this format, or holds objects beyond tensors and primitives; one line naming the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no federation checkpoint at {path!r}")
    with open(path, "rb") as f:
        if not zipfile.is_zipfile(f):  # torch.save writes a zip archive; a truncated one lacks its directory
            raise CheckpointError(f"{path!r} is damaged: truncated, or not written by torch.save")
        f.seek(0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch warns before refusing some pickles; the error says enough
                checkpoint = torch.load(path if mmap else f, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception as exc:
            raise CheckpointError(_unreadable(path, exc)) from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f"{path!r} is not a federation checkpoint of this version (format {repr(found)[:40]}, expected {FORMAT!r})"
        )
    _check_contents(path, checkpoint)
    return checkpoint


_CONTENTS: dict[str, type | tuple[type, ...]] = {
    "round": int,
    "weights": dict,
    "strategy": dict,
    "callbacks": dict,
    "clients": dict,
    "rng": dict,
    "last_round": (dict, type(None)),
    "trainer": dict,
}
"""The top-level fields of a federation checkpoint and their types (see the module docstring)."""

_TRAINER_FIELDS: dict[str, type | tuple[type, ...]] = {
    "should_stop": bool,
    "client_lr_scale": (int, float),
    "seed": int,
    "num_clients": int,
}


def _check_contents(path: str, checkpoint: dict[str, Any]) -> None:
    """Refuse a checkpoint that lacks a field, or holds one of another type, naming the file and the field."""
    _check_fields(path, checkpoint, _CONTENTS, "")
    _check_fields(path, checkpoint["trainer"], _TRAINER_FIELDS, "trainer.")
    if checkpoint["round"] < 0 or not all(isinstance(t, torch.Tensor) for t in checkpoint["weights"].values()):
        raise CheckpointError(f"{path!r} is not a federation checkpoint: its `round` or `weights` is not one")


def _check_fields(path: str, record: dict[str, Any], fields: dict[str, type | tuple[type, ...]], prefix: str) -> None:
    for name, kind in fields.items():
        if name not in record:
            raise CheckpointError(f"{path!r} is not a whole federation checkpoint: it has no `{prefix}{name}`")
        value = record[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CheckpointError(
                f"{path!r} is not a federation checkpoint: its `{prefix}{name}` is a {type(value).__name__}"
            )


class HistoryLog:
    """The rounds' history beside the federation checkpoints of a folder: one JSON line per round.

    A checkpoint of round N takes the first N lines; lines after them are rounds of a run that went
    on (or crashed) after that checkpoint was written. A run's first write rewrites the file (a
    resumed run thus drops what followed its checkpoint); later writes append the new rounds.
    Each write is flushed to disk before the checkpoint naming its round is renamed into place.

    Args:
        checkpoint_path: A checkpoint file of the folder whose log this is.

    Example:
        >>> HistoryLog("runs/x/checkpoints/last.ckpt").path
        'runs/x/checkpoints/history.jsonl'
    """

    def __init__(self, checkpoint_path: str | os.PathLike[str]) -> None:
        self.path = os.path.join(os.path.dirname(os.fspath(checkpoint_path)), HISTORY_LOG)
        self._written: int | None = None  # rounds this object has put in the file

    def write(self, history: Sequence[RoundResult]) -> None:
        """Make the file hold ``history``, one line per round, and flush it to disk."""
        if self._written is None:
            self._rewrite(history)
        elif len(history) > self._written:
            with open(self.path, "a", encoding="utf-8") as f:
                f.writelines(_line(r) for r in history[self._written :])
                f.flush()
                os.fsync(f.fileno())
        self._written = len(history)

    def _rewrite(self, history: Sequence[RoundResult]) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with atomic_write(self.path, encoding="utf-8") as f:
            f.writelines(_line(r) for r in history)


def load_history(path: str | os.PathLike[str], checkpoint: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of rounds ``1 .. checkpoint["round"]`` for the checkpoint loaded from ``path``.

    They are the first lines of the :class:`HistoryLog` in the folder of ``path``.

    Raises:
        CheckpointError: The log is missing, damaged, shorter than the checkpoint's round, or
            not the one written with the checkpoint.
    """
    path, log = os.fspath(path), HistoryLog(path).path
    rounds = checkpoint["round"]
    if rounds == 0:
        return []
    records: list[dict[str, Any]] = []
    try:
        with open(log, "rb") as f:
            for number, line in enumerate(itertools.islice(f, rounds), start=1):
                record = json.loads(line) if line.endswith(b"\n") else None
                if not isinstance(record, dict) or record.get("round_num") != number:
                    raise CheckpointError(f"the history log {log!r} of {path!r} is damaged at line {number}")
                records.append(record)
    except FileNotFoundError:
        raise CheckpointError(
            f"{path!r} needs the history log {log!r} that is written beside it; copy the two files together"
        ) from None
    except ValueError as exc:  # invalid JSON or UTF-8
        raise CheckpointError(f"the history log {log!r} of {path!r} is damaged at line {len(records) + 1}") from exc
    if len(records) < rounds:
        raise CheckpointError(f"the history log {log!r} holds {len(records)} rounds, {path!r} needs {rounds}")
    if _dumps(records[-1]) != _dumps(checkpoint["last_round"]):
        raise CheckpointError(
            f"the history log {log!r} is not the one written with {path!r}: their round {rounds} differs "
            "(another run wrote the log since)"
        )
    return records


def lightning_fields(model: pl.LightningModule) -> dict[str, Any]:
    """What ``LightningModule.load_from_checkpoint`` needs beside ``state_dict``: the version, the hyper-parameters.

    Hyper-parameters that ``torch.load(weights_only=True)`` cannot read back (objects beyond
    tensors and primitives) are left out, with a warning: the checkpoint stays loadable safely, and
    ``load_from_checkpoint(path, name=value)`` supplies them.
    """
    fields: dict[str, Any] = {"pytorch-lightning_version": pl.__version__}
    hparams = dict(model.hparams)
    if not hparams:
        return fields
    kept = {name: value for name, value in hparams.items() if _loads_safely(value)}
    if len(kept) < len(hparams):
        log.warning(
            "the federation checkpoints leave out the hyper-parameters %s of %s: a weights-only load cannot read "
            "them back; pass them to `load_from_checkpoint`", ", ".join(sorted(set(hparams) - set(kept))),
            type(model).__name__,
        )
    fields[model.CHECKPOINT_HYPER_PARAMS_KEY] = kept
    if getattr(model, "_hparams_name", None):
        fields[model.CHECKPOINT_HYPER_PARAMS_NAME] = model._hparams_name
    return fields


def get_rng_states() -> dict[str, Any]:
    """The states of Python's, NumPy's legacy and torch's global generators, as tensors and primitives."""
    name, key, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore the generator states returned by :func:`get_rng_states`."""
    random.setstate(_tuples(states["python"]))
    np_state = states["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["key"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def callback_states(callbacks: Iterable[Any]) -> dict[str, Any]:
    """``{state_key: state_dict()}`` of the callbacks with state."""
    return {key: cb.state_dict() for key, cb in stateful_callbacks(callbacks).items()}


def load_callback_states(callbacks: Iterable[Any], states: dict[str, Any]) -> None:
    """Load each state of ``states`` into the callback with that ``state_key``.

    Raises:
        CheckpointError: A state has no callback to go to (the callbacks differ from the run that
            wrote the checkpoint).
    """
    by_key = stateful_callbacks(callbacks)
    for key, state in states.items():
        if key not in by_key:
            known = ", ".join(sorted(by_key)) or "none"
            raise CheckpointError(
                f"the checkpoint holds the state of callback {key!r}, which this run does not have "
                f"(callbacks with state here: {known}); resume with the callbacks of the run that wrote it"
            )
        by_key[key].load_state_dict(state)


def _loads_safely(value: Any) -> bool:
    """Whether ``torch.load(weights_only=True)`` reads ``value`` back from what ``torch.save`` writes."""
    buffer = io.BytesIO()
    try:
        torch.save(value, buffer)
        buffer.seek(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.load(buffer, weights_only=True)
    except Exception:
        return False
    return True


def _line(result: RoundResult) -> str:
    return _dumps(result.to_dict()) + "\n"


def _dumps(record: Any) -> str:
    # metric values that a callback added as NumPy or 0-d tensor scalars are written as floats
    return json.dumps(record, default=float)


def _unreadable(path: str, exc: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` failed on ``path``, in one line without torch's advice to load unsafely."""
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
    if refused:
        return (
            f"{path!r} is not a federation checkpoint: it holds a `{refused[1][:80]}` object, and only tensors "
            "and primitives are loaded from a checkpoint"
        )
    if isinstance(exc, pickle.UnpicklingError):
        return f"{path!r} is not a federation checkpoint: its contents cannot be read with a weights-only load"
    return f"{path!r} is damaged: torch.load cannot read it ({type(exc).__name__})"


def _tuples(value: Any) -> Any:
    """``random.setstate`` wants tuples where a round trip may give lists."""
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(v) for v in value)
    return value
