"""A config's registered entries built (callbacks, a strategy, a backend); what user code raising there becomes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from callbacks import BridgeError, ConfigError, build, registered
from callbacks.arguments import one_line

__all__ = ["USER_CODE_ERRORS", "build_callbacks_at", "built_entry", "raised"]

_T = TypeVar("_T")

USER_CODE_ERRORS: tuple[type[BaseException], ...] = (Exception, SystemExit)
"""What user code may raise while it is built, as a config error of its entry (a Ctrl-C still stops)."""


def raised(what: str, exc: BaseException) -> str:
    """The line saying that ``what`` (user code) raised ``exc``."""
    return f"{what} raised {type(exc).__name__}: {one_line(exc)}"


def built_entry(kind: str, section: Mapping[str, Any], base: type[_T], passed: tuple[type[Exception], ...] = ()) -> _T:
    """The ``kind`` entry built, if a ``base``; what its code raises (but ``passed``) is an error at ``kind.args``."""
    reraised: tuple[type[BaseException], ...] = (BridgeError, *passed)
    try:
        built = build(kind, section, kind)
    except reraised:
        raise
    except USER_CODE_ERRORS as exc:
        raise ConfigError(raised(f"`{section['type']}`", exc), f"{kind}.args") from exc
    if not isinstance(built, base):
        raise ConfigError(
            f"`{section['type']}` built a {type(built).__name__}, not a federated.{base.__name__}", f"{kind}.type"
        )
    return built


def build_callbacks_at(entries: Sequence[Any], path: str) -> list[Any]:
    """Build the callback entries at ``path`` (``callbacks`` or ``client_callbacks``) in order.

    A ``type`` is a registered name or an import path: ``pkg.module:Class``, or, for a name that
    is not registered, ``pkg.module.Class`` (``lightning.pytorch.callbacks.EarlyStopping``, a
    Lightning callback for the client fits); or one of OiaFed's registry names, ``federated.callback.<name>``.
    """
    built = []
    for i, entry in enumerate(entries):
        try:
            built.append(build("callback", _import_path(entry), f"{path}[{i}]"))
        except BridgeError:
            raise
        except USER_CODE_ERRORS as exc:
            kind = entry.get("type") if isinstance(entry, Mapping) else entry
            raise ConfigError(raised(f"`{kind}`", exc), f"{path}[{i}].args") from exc
    return built


_OIAFED_NAMES = "federated.callback."
"""The prefix of OiaFed's registry names (``callbacks.oiafed.OIAFED_CALLBACK_TYPES``)."""


def _import_path(entry: Any) -> Any:
    """``entry``, a dotted ``type`` ``pkg.module.Class`` that is no registered name written ``pkg.module:Class``."""
    kind = entry.get("type") if isinstance(entry, Mapping) else entry
    if not isinstance(kind, str) or ":" in kind or "." not in kind.strip(".") or kind in registered("callback"):
        return entry
    if kind.startswith(_OIAFED_NAMES):  # OiaFed's registry names, known or misspelt, are no module paths
        return entry
    module, _, name = kind.rpartition(".")
    typed = f"{module}:{name}"
    return {**entry, "type": typed} if isinstance(entry, Mapping) else typed
