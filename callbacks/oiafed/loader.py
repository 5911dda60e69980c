"""Recognise OiaFed 0.2 callbacks by their base class's module path, and import OiaFed's callback modules.

Nothing here imports OiaFed until :func:`import_oiafed` is called, which happens only once an
OiaFed-style callback is given (or named in a configuration).

``import oiafed.callback`` runs ``oiafed/__init__.py`` first, which imports OiaFed's runner, its
trainers and its data sets, and with them ``torchvision`` and ``torchaudio``. Its callback modules
need none of that: :func:`import_oiafed` registers the ``oiafed`` package without running its
``__init__`` (the package's folder as its search path) and imports the asked-for module from it.
That is the one adaptation of OiaFed's package: in the same process, ``oiafed``'s top-level
re-exports (``oiafed.FederationRunner``) are then absent, while every ``oiafed.<module>`` imports
as usual.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

__all__ = [
    "OIAFED_BASE",
    "OIAFED_CALLBACK_TYPES",
    "OIAFED_SYNC_BASE",
    "import_oiafed",
    "is_oiafed_callback",
    "is_oiafed_sync_callback",
]

OIAFED_BASE = "oiafed.callback.base.Callback"
"""The base class of OiaFed's callbacks, by module path: an object whose class derives from it is OiaFed-style."""

OIAFED_SYNC_BASE = "oiafed.callback.sync_callback.SyncCallback"
"""The base class of OiaFed's synchronisation callbacks (``TrackerSyncCallback``), by module path."""


OIAFED_CALLBACK_TYPES: dict[str, str] = {
    "federated.callback.early_stopping": "oiafed.callback.builtin:EarlyStopping",
    "federated.callback.logging": "oiafed.callback.builtin:LoggingCallback",
    "federated.callback.mlflow": "oiafed.callback.builtin:MLflowCallback",
    "federated.callback.model_checkpoint": "oiafed.callback.builtin:ModelCheckpoint",
    "federated.callback.tracker_sync": "oiafed.callback.tracker_sync:TrackerSyncCallback",
}
"""OiaFed 0.2's registry names of its built-in callbacks (its ``@register``), and their classes' import paths.
A configuration's callback ``type`` may be one of them, or an import path into ``oiafed``."""


def _derives(obj: Any, base: str) -> bool:
    module, _, name = base.rpartition(".")
    return any(c.__module__ == module and c.__qualname__ == name for c in type(obj).__mro__)


def is_oiafed_callback(obj: Any) -> bool:
    """Whether ``obj``'s class derives from OiaFed's ``oiafed.callback.base.Callback`` (read from the MRO, no import).

    Example:
        >>> from callbacks import Callback
        >>> is_oiafed_callback(Callback())
        False
    """
    return _derives(obj, OIAFED_BASE)


def is_oiafed_sync_callback(obj: Any) -> bool:
    """Whether ``obj``'s class derives from OiaFed's ``oiafed.callback.sync_callback.SyncCallback``."""
    return _derives(obj, OIAFED_SYNC_BASE)


def import_oiafed(module: str = "oiafed.callback") -> types.ModuleType:
    """Import ``module`` of the installed OiaFed package, without running ``oiafed/__init__.py`` if not run yet.

    Args:
        module: A module of OiaFed, e.g. ``"oiafed.callback.builtin"``. Defaults to ``"oiafed.callback"``.

    Raises:
        ModuleNotFoundError: OiaFed is not installed, or has no such module.
    """
    if module != "oiafed" and not module.startswith("oiafed."):
        raise ValueError(f"`module` must be a module of OiaFed (`oiafed.<...>`), got {module!r}")
    if "oiafed" not in sys.modules:
        spec = importlib.util.find_spec("oiafed")
        if spec is None or spec.submodule_search_locations is None:
            raise ModuleNotFoundError(
                "OiaFed is not installed; install its callback modules with `make venv EXTRAS=dev,oiafed` "
                "(pip install --no-deps oiafed==0.2.3, then pip install .[oiafed])",
                name="oiafed",
            )
        package = importlib.util.module_from_spec(spec)  # the package object, its __init__ left unrun
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["oiafed"] = package
    return importlib.import_module(module)
