"""The YAML application that ``python -m lightning_bridge.fed`` runs: config, builders, one run.

:mod:`~federated.app.config` checks a YAML config once, with key paths, and imports no torch, so
that a config error answers at once; :mod:`~federated.app.builders` builds what it names;
:mod:`~federated.app.run` trains and writes the outputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from callbacks.lazy import lazy_exports
from federated.app.config import load_config as load_config

if TYPE_CHECKING:
    from federated.app.run import Run as Run
    from federated.app.run import prepare_run as prepare_run

__all__ = ["Run", "load_config", "prepare_run"]

_LAZY = {"Run": "federated.app.run", "prepare_run": "federated.app.run"}
"""Public names whose module imports torch and Lightning, loaded on first access (PEP 562)."""

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
