"""Native callbacks: one interface for centralised Lightning training and federated rounds.

This package imports no Lightning: ``lightning_bridge`` adapts it to ``lightning.Trainer`` and
``federated`` drives it from its round loop. Nor does ``import callbacks`` import torch: the
built-ins that need it (``LRScheduler``, ``TensorBoard``) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from callbacks._yaml import dump_yaml as dump_yaml
from callbacks._yaml import load_yaml as load_yaml
from callbacks._yaml import read_yaml_file as read_yaml_file
from callbacks.callback import CONTEXT_ARGUMENTS as CONTEXT_ARGUMENTS
from callbacks.callback import HOOK_ARGUMENTS as HOOK_ARGUMENTS
from callbacks.callback import Callback as Callback
from callbacks.early_stopping import EarlyStopping as EarlyStopping
from callbacks.exceptions import ArgumentError as ArgumentError
from callbacks.exceptions import BridgeError as BridgeError
from callbacks.exceptions import ConfigError as ConfigError
from callbacks.exceptions import HookSignatureError as HookSignatureError
from callbacks.exceptions import MetricNotFoundError as MetricNotFoundError
from callbacks.exceptions import RegistryError as RegistryError
from callbacks.lazy import lazy_exports
from callbacks.manager import CallbackManager as CallbackManager
from callbacks.manager import OnError as OnError
from callbacks.metrics_logger import MetricsLogger as MetricsLogger
from callbacks.model_checkpoint import ModelCheckpoint as ModelCheckpoint
from callbacks.monitor import MonitorCallback as MonitorCallback
from callbacks.privacy_budget import PrivacyBudget as PrivacyBudget
from callbacks.registry import build as build
from callbacks.registry import build_callbacks as build_callbacks
from callbacks.registry import register as register
from callbacks.registry import registered as registered
from callbacks.registry import resolve as resolve
from callbacks.trainer import FederatedTrainerLike as FederatedTrainerLike
from callbacks.trainer import TrainerLike as TrainerLike

if TYPE_CHECKING:
    from callbacks.lr_scheduler import LRScheduler as LRScheduler
    from callbacks.tensorboard import TensorBoard as TensorBoard

__all__ = [
    "CONTEXT_ARGUMENTS",
    "HOOK_ARGUMENTS",
    "ArgumentError",
    "BridgeError",
    "Callback",
    "CallbackManager",
    "ConfigError",
    "EarlyStopping",
    "FederatedTrainerLike",
    "HookSignatureError",
    "LRScheduler",
    "MetricNotFoundError",
    "MetricsLogger",
    "ModelCheckpoint",
    "MonitorCallback",
    "OnError",
    "PrivacyBudget",
    "RegistryError",
    "TensorBoard",
    "TrainerLike",
    "build",
    "build_callbacks",
    "dump_yaml",
    "load_yaml",
    "read_yaml_file",
    "register",
    "registered",
    "resolve",
]

_LAZY = {"LRScheduler": "callbacks.lr_scheduler", "TensorBoard": "callbacks.tensorboard"}
"""Public names whose modules import torch, loaded on first access (PEP 562)."""

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
