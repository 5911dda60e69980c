"""Where the adapter's native callbacks come from: objects, ``{type, args}`` entries, YAML, a mapping."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from callbacks import ConfigError, build_callbacks, read_yaml_file

CallbackSource = Sequence[Any] | Mapping[str, Any] | str | os.PathLike[str] | None
"""Native callbacks; ``{type, args}`` entries; a YAML file path or a mapping with a ``callbacks:`` list."""


def load_natives(source: CallbackSource) -> list[Any]:
    """The native callbacks ``source`` gives: the objects themselves, or built from configuration.

    Raises:
        ConfigError: One line with the key path, prefixed by the file's path for a YAML file.
    """
    if source is None:
        return []
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        config = read_yaml_file(path) or {}
        try:
            return load_natives(config if isinstance(config, Mapping) else {"callbacks": config})
        except ConfigError as exc:
            raise ConfigError(exc.message, f"{path}: {exc.path}" if exc.path else path) from exc
    if isinstance(source, Mapping):
        unknown = [k for k in source if k != "callbacks"]
        if unknown:
            raise ConfigError(f"unknown key `{unknown[0]}`; a callbacks config holds one key, `callbacks`", "")
        return build_callbacks(source.get("callbacks"))
    items = list(source)
    if any(isinstance(item, (Mapping, str)) for item in items):
        return build_callbacks(items)
    return items
