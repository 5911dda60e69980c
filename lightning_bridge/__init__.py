"""Native callbacks inside ``lightning.Trainer``: one line in an existing Lightning project.

``python -m lightning_bridge.fed --config fed.yaml`` runs a federation from YAML.
"""

from lightning_bridge.adapter import LightningCallbackAdapter as LightningCallbackAdapter
from lightning_bridge.checkpoint_io import RecordingCheckpointIO as RecordingCheckpointIO

__all__ = ["LightningCallbackAdapter", "RecordingCheckpointIO"]
