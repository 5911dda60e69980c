"""The YAML application that ``python -m lightning_bridge.fed`` runs: config, builders, one run.

:mod:`~federated.app.config` checks a YAML config once, with key paths;
:mod:`~federated.app.builders` builds what it names; :mod:`~federated.app.run` trains and writes
the outputs.
"""

from federated.app.config import load_config as load_config
from federated.app.run import Run as Run
from federated.app.run import prepare_run as prepare_run

__all__ = ["Run", "load_config", "prepare_run"]
