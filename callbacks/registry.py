"""Name -> class registry and the builder of callbacks from configuration."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from callbacks.arguments import check_arguments, echo, suggest
from callbacks.exceptions import ArgumentError, ConfigError, RegistryError
from callbacks.oiafed.loader import OIAFED_CALLBACK_TYPES, import_oiafed

__all__ = ["build", "build_callbacks", "register", "registered", "resolve"]

T = TypeVar("T")

_REGISTRY: dict[str, dict[str, Any]] = {}

MAX_TYPE_NAME = 200
"""The longest type name or import path taken."""

_IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")

_BUILT_INS: dict[str, str] = {
    "callback.early_stopping": "callbacks.early_stopping.EarlyStopping",
    "callback.lr_scheduler": "callbacks.lr_scheduler.LRScheduler",
    "callback.metrics_logger": "callbacks.metrics_logger.MetricsLogger",
    "callback.model_checkpoint": "callbacks.model_checkpoint.ModelCheckpoint",
    "callback.privacy_budget": "callbacks.privacy_budget.PrivacyBudget",
    "callback.tensorboard": "callbacks.tensorboard.TensorBoard",
}
"""The built-in callbacks' names and classes. The names are reserved from the start, whatever the import
order: the modules that import torch (``LRScheduler``, ``TensorBoard``) load only at the first look-up of
their kind, so that ``import callbacks`` stays light and ``python -m lightning_bridge.fed --help``
answers at once."""


def register(name: str) -> Callable[[T], T]:
    """Register a class (or factory) under ``"kind.short_name"``, e.g. ``"callback.early_stopping"``.

    Configuration then refers to it by the short name within its kind (``type: early_stopping``).

    Raises:
        RegistryError: The name has no kind prefix, is a built-in's or taken by another object, or the
            object is not callable.

    Example:
        >>> from callbacks import Callback
        >>> @register("callback.doc_example")
        ... class DocExample(Callback):
        ...     pass
        >>> resolve("callback", "doc_example") is DocExample
        True
    """
    kind, sep, short = name.partition(".")
    if not sep or not kind or not short:
        raise RegistryError(f"a registry name is `kind.name`, e.g. `callback.early_stopping`, got {name!r}")

    def decorator(obj: T) -> T:
        if not callable(obj):
            raise RegistryError(f"only classes and factories can be registered, got {obj!r} for {name!r}")
        built_in = _BUILT_INS.get(name)
        if built_in is not None and _qualname(obj) != built_in:
            raise RegistryError(
                f"{name!r} is the name of the built-in {built_in}; register {_qualname(obj)} under another "
                f"name, e.g. '{kind}.my_{short}'"
            )
        names = _REGISTRY.setdefault(kind, {})
        existing = names.get(short)
        if existing is not None and _qualname(existing) != _qualname(obj):
            raise RegistryError(f"{name!r} is registered already, to {_qualname(existing)}")
        names[short] = obj
        return obj

    return decorator


def registered(kind: str) -> list[str]:
    """The short names registered under ``kind``, sorted."""
    return sorted(_names(kind))


def _names(kind: str) -> dict[str, Any]:
    """The objects registered under ``kind``, after importing the modules of its built-ins not loaded yet."""
    names = _REGISTRY.get(kind, {})
    for name, built_in in _BUILT_INS.items():
        built_in_kind, _, short = name.partition(".")
        if built_in_kind == kind and short not in names:
            importlib.import_module(built_in.rpartition(".")[0])
    return _REGISTRY.get(kind, {})


def _is_type_name(name: Any) -> bool:
    """Whether ``name`` can name a type: a short string, an import path ``pkg.module:Name`` if it holds a colon."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_TYPE_NAME:
        return False
    return ":" not in name or _IMPORT_PATH.fullmatch(name) is not None


def resolve(kind: str, type_name: Any, path: str = "type") -> Any:
    """Return the object registered as ``type_name`` under ``kind``, or imported from ``pkg.mod:Name``.

    A callback type may also be one of OiaFed 0.2's registry names (``federated.callback.early_stopping``,
    see :data:`~callbacks.oiafed.OIAFED_CALLBACK_TYPES`); those and import paths into ``oiafed`` load
    through :func:`~callbacks.oiafed.import_oiafed`.

    Raises:
        ConfigError: Unknown name (the known ones are listed, with a close match) or failed import.
    """
    if not _is_type_name(type_name):
        raise ConfigError(
            f"expected a {kind} type name or an import path `pkg.module:Name`, got {echo(type_name)}", path
        )
    if kind == "callback" and type_name in OIAFED_CALLBACK_TYPES:
        type_name = OIAFED_CALLBACK_TYPES[type_name]
    if ":" in type_name:
        module_name, _, attr = type_name.partition(":")
        try:
            oiafed = module_name.split(".")[0] == "oiafed"
            module = import_oiafed(module_name) if oiafed else importlib.import_module(module_name)
        except (Exception, SystemExit) as exc:  # the module's own code runs: whatever it raises is this entry's
            raise ConfigError(f"cannot import `{module_name}` ({type(exc).__name__}: {exc})", path) from exc
        try:
            return getattr(module, attr)
        except AttributeError as exc:
            raise ConfigError(f"module `{module_name}` has no attribute `{attr}`", path) from exc
    names = _names(kind)
    if type_name in names:
        return names[type_name]
    choices = [*names, *OIAFED_CALLBACK_TYPES] if kind == "callback" else list(names)
    known = ", ".join(sorted(choices)) or "none"
    raise ConfigError(
        f"unknown {kind} type {echo(type_name)}{suggest(type_name, choices)}; known: {known}, "
        "or an import path `pkg.module:Name`",
        path,
    )


def build(kind: str, entry: Any, path: str) -> Any:
    """Build one ``{type: ..., args: {...}}`` entry of ``kind`` at configuration ``path``."""
    if isinstance(entry, str):
        entry = {"type": entry}
    if not isinstance(entry, Mapping):
        raise ConfigError(f"expected a mapping with `type` and `args`, got {type(entry).__name__} {echo(entry)}", path)
    for key in entry:
        if key not in ("type", "args"):
            raise ConfigError(f"unknown key `{key}`{suggest(str(key), ['type', 'args'])}; accepted: type, args", path)
    if "type" not in entry:
        raise ConfigError("missing `type`", path)
    target = resolve(kind, entry["type"], f"{path}.type")
    if not callable(target):
        raise ConfigError(f"`{entry['type']}` is a {type(target).__name__}, not a class or factory", f"{path}.type")
    args = entry.get("args") or {}
    if not isinstance(args, Mapping):
        raise ConfigError(f"expected a mapping of arguments, got {type(args).__name__} {echo(args)}", f"{path}.args")
    check_arguments(target, args, f"{path}.args")
    try:
        return target(**args)
    except ArgumentError as exc:  # the argument's own key path, when the entry gave it
        if exc.argument in args:
            raise ConfigError(exc.problem, f"{path}.args.{exc.argument}") from exc
        raise ConfigError(f"{_qualname(target)}: {exc}", f"{path}.args") from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{_qualname(target)}: {exc}", f"{path}.args") from exc


def build_callbacks(config: Sequence[Any] | None, path: str = "callbacks") -> list[Any]:
    """Build native callbacks from a list of ``{type, args}`` entries, in order.

    Args:
        config: Entries such as ``{"type": "early_stopping", "args": {"patience": 3}}``; a type is a
            registered short name or an import path ``pkg.module:Class``. A bare string is a type
            without arguments. ``None`` builds nothing.
        path: The configuration path of the list, used in error messages. Defaults to ``"callbacks"``.

    Raises:
        ConfigError: One readable line naming the path, what was found and what is accepted.

    Example:
        >>> import callbacks
        >>> [type(cb).__name__ for cb in build_callbacks([{"type": "early_stopping", "args": {"patience": 2}}])]
        ['EarlyStopping']
    """
    if config is None:
        return []
    if isinstance(config, (str, bytes, Mapping)) or not isinstance(config, Sequence):
        raise ConfigError(f"expected a list of callback entries, got {type(config).__name__}", path)
    return [build("callback", entry, f"{path}[{i}]") for i, entry in enumerate(config)]


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
