"""Native callbacks inside ``lightning.Trainer``: one line in an existing Lightning project.

``python -m lightning_bridge.fed --config fed.yaml`` runs a federation from YAML. The public names
load Lightning on first access (PEP 562), so the command line answers ``--help`` at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from callbacks.lazy import lazy_exports

if TYPE_CHECKING:
    from lightning_bridge.adapter import LightningCallbackAdapter as LightningCallbackAdapter
    from lightning_bridge.checkpoint_io import RecordingCheckpointIO as RecordingCheckpointIO
    from lightning_bridge.dp_sgd import DPSGD as DPSGD

__all__ = ["DPSGD", "LightningCallbackAdapter", "RecordingCheckpointIO"]

_LAZY = {
    "DPSGD": "lightning_bridge.dp_sgd",
    "LightningCallbackAdapter": "lightning_bridge.adapter",
    "RecordingCheckpointIO": "lightning_bridge.checkpoint_io",
}
"""Where each public name is defined."""

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
