"""Exceptions raised by the native callback package.

The tree::

    BridgeError
    ├── ConfigError           a configuration value is wrong (carries the key path)
    ├── RegistryError         a name is registered twice, or a registered object is unusable
    ├── HookSignatureError    a hook asks for an argument its event cannot supply
    └── MetricNotFoundError   a callback watches a metric that was not reported
"""

from __future__ import annotations

__all__ = ["BridgeError", "ConfigError", "HookSignatureError", "MetricNotFoundError", "RegistryError"]


class BridgeError(Exception):
    """Base class of every error raised on purpose by this project."""


class ConfigError(BridgeError, ValueError):
    """A configuration entry is wrong.

    Args:
        message: What was wrong, what was found and what is accepted.
        path: Where in the configuration, e.g. ``callbacks[1].args.patience``. Defaults to ``""``.

    Example:
        >>> str(ConfigError("unknown argument `patince`", path="callbacks[0].args"))
        'callbacks[0].args: unknown argument `patince`'
    """

    def __init__(self, message: str, path: str = "") -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class RegistryError(BridgeError):
    """A registry name is taken already, or the registered object cannot be used."""


class HookSignatureError(BridgeError, TypeError):
    """A callback hook asks for an argument that its event cannot supply."""


class MetricNotFoundError(BridgeError, LookupError):
    """A callback watches a metric that is not among the reported ones (the message lists those)."""
