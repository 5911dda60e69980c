"""Native callbacks inside ``lightning.Trainer``: one line in an existing Lightning project.

``python -m lightning_bridge.fed --config fed.yaml`` runs a federation from YAML. The public names
load Lightning on first access (PEP 562), so the command line answers ``--help`` at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lightning_bridge.adapter import LightningCallbackAdapter as LightningCallbackAdapter
    from lightning_bridge.checkpoint_io import RecordingCheckpointIO as RecordingCheckpointIO

__all__ = ["LightningCallbackAdapter", "RecordingCheckpointIO"]

_LAZY = {
    "LightningCallbackAdapter": "lightning_bridge.adapter",
    "RecordingCheckpointIO": "lightning_bridge.checkpoint_io",
}
"""Where each public name is defined."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
