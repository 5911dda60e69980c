"""OiaFed 0.2 callbacks, run unchanged: recognised by their base class's module path, OiaFed imported only then.

An object whose class derives from ``oiafed.callback.base.Callback`` (checked by module path and
name along its MRO, without importing OiaFed) is wrapped in :class:`OiaFedCallback` by every
:class:`~callbacks.CallbackManager`, so the round loop, the client fits and the Lightning adapter
all run it. ``docs/callbacks.md`` tells which hook fires when, with what.
"""

from __future__ import annotations

from callbacks.oiafed.adapter import OiaFedCallback as OiaFedCallback
from callbacks.oiafed.adapter import adapt as adapt
from callbacks.oiafed.loader import OIAFED_BASE as OIAFED_BASE
from callbacks.oiafed.loader import OIAFED_CALLBACK_TYPES as OIAFED_CALLBACK_TYPES
from callbacks.oiafed.loader import OIAFED_SYNC_BASE as OIAFED_SYNC_BASE
from callbacks.oiafed.loader import import_oiafed as import_oiafed
from callbacks.oiafed.loader import is_oiafed_callback as is_oiafed_callback
from callbacks.oiafed.loader import is_oiafed_sync_callback as is_oiafed_sync_callback

__all__ = [
    "OIAFED_BASE",
    "OIAFED_CALLBACK_TYPES",
    "OIAFED_SYNC_BASE",
    "OiaFedCallback",
    "adapt",
    "import_oiafed",
    "is_oiafed_callback",
    "is_oiafed_sync_callback",
]
