"""Exceptions raised by the native callback package.

The tree::

    BridgeError
    ├── ConfigError           a configuration value is wrong (carries the key path)
    ├── ArgumentError         an argument of a constructor or function is wrong (carries its name)
    ├── RegistryError         a name is registered twice, or a registered object is unusable
    ├── HookSignatureError    a hook asks for an argument its event cannot supply
    └── MetricNotFoundError   a callback watches a metric that was not reported
"""

from __future__ import annotations

__all__ = ["ArgumentError", "BridgeError", "ConfigError", "HookSignatureError", "MetricNotFoundError", "RegistryError"]


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


class ArgumentError(BridgeError, ValueError):
    """An argument is wrong: its name, what is wrong with it, and what is accepted.

    A configuration that gave the argument reports the ``problem`` at the argument's own key path
    (``callbacks[0].args.patience: must be an int in [1, inf), got 0``).

    Args:
        argument: The argument's name, or a dotted path inside it (``trainer_kwargs.devices``).
        problem: What is wrong and what is accepted, e.g. ``must be an int in [1, inf), got 0``.

    Example:
        >>> str(ArgumentError("patience", "must be an int in [1, inf), got 0"))
        '`patience`: must be an int in [1, inf), got 0'
    """

    def __init__(self, argument: str, problem: str) -> None:
        self.argument = argument
        self.problem = problem
        super().__init__(f"`{argument}`: {problem}")


class RegistryError(BridgeError):
    """A registry name is taken already, or the registered object cannot be used."""


class HookSignatureError(BridgeError, TypeError):
    """A callback hook asks for an argument that its event cannot supply."""


class MetricNotFoundError(BridgeError, LookupError):
    """A callback watches a metric that is not among the reported ones (the message lists those)."""
