"""The federation checkpoint: written atomically, read with ``torch.load(weights_only=True)``.

Contents (tensors and primitives only)::

    format              "federated/1"
    round               the last completed round
    weights             the global state dict after that round
    strategy            the strategy's state_dict()
    callbacks           {state_key: state} of the server callbacks with state
    client_callbacks    {client_id: {state_key: state}} of the clients' own callbacks
    rng                 Python, NumPy and torch (and CUDA) generator states
    history             [RoundResult.to_dict(), ...]
    trainer             should_stop, client_lr_scale, seed, num_clients
"""

from __future__ import annotations

import os
import pickle
import random
import re
import warnings
import zipfile
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from federated.exceptions import CheckpointError

__all__ = [
    "FORMAT",
    "callback_states",
    "get_rng_states",
    "load_callback_states",
    "load_checkpoint",
    "save_checkpoint",
    "set_rng_states",
    "stateful_callbacks",
]

FORMAT = "federated/1"


def save_checkpoint(path: str | os.PathLike[str], checkpoint: dict[str, Any]) -> str:
    """Write ``checkpoint`` to ``path`` atomically (a temporary file in the same folder, then a rename).

    A crash leaves either the previous file or the new one under ``path``, never half of one.
    Parent folders are created. Returns ``path`` as a string.
    """
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, **checkpoint}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a federation checkpoint with ``torch.load(weights_only=True)``.

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
                checkpoint = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(_unreadable(path, exc)) from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f"{path!r} is not a federation checkpoint of this version (format {repr(found)[:40]}, expected {FORMAT!r})"
        )
    return checkpoint


def get_rng_states() -> dict[str, Any]:
    """The states of Python's, NumPy's legacy and torch's global generators, as tensors and primitives."""
    name, key, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
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


def stateful_callbacks(callbacks: Iterable[Any]) -> dict[str, Any]:
    """The callbacks that define ``state_dict``, by ``state_key``.

    Raises:
        ValueError: Two of them share a ``state_key`` (their states would overwrite each other).
    """
    from callbacks import Callback

    out: dict[str, Any] = {}
    for callback in callbacks:
        method = getattr(type(callback), "state_dict", None)
        if not callable(method) or method is Callback.state_dict:
            continue
        key = getattr(callback, "state_key", type(callback).__qualname__)
        if key in out:
            raise ValueError(
                f"two callbacks share the state key {key!r}; give one a distinct `state_key` so their "
                "checkpointed states do not overwrite each other"
            )
        out[key] = callback
    return out


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
