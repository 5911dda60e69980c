"""Check configuration values: against a constructor's signature and annotations, with close-match
suggestions and values echoed short, as every ``ConfigError`` of the project words them.
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
import reprlib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from callbacks.exceptions import ArgumentError, ConfigError

__all__ = [
    "ECHO_LIMIT",
    "check_arguments",
    "check_number",
    "describe",
    "echo",
    "key_path",
    "matches",
    "mismatch",
    "one_line",
    "span",
    "suggest",
]

ECHO_LIMIT = 80
"""The most characters of a value an error message shows."""

_ECHO = reprlib.Repr()
_ECHO.maxlevel, _ECHO.maxstring, _ECHO.maxother, _ECHO.maxlong = 3, ECHO_LIMIT, ECHO_LIMIT, ECHO_LIMIT
_ECHO.maxlist = _ECHO.maxtuple = _ECHO.maxdict = _ECHO.maxset = 8


def echo(value: Any) -> str:
    """``repr(value)`` cut to :data:`ECHO_LIMIT` characters: how an error message shows a value it got.

    Only the part shown is formatted, so a huge value (a nested alias expansion) costs nothing.

    Example:
        >>> echo("fast"), echo(list(range(100)))
        ("'fast'", '[0, 1, 2, 3, 4, 5, 6, 7, ...]')
    """
    text = _ECHO.repr(value)
    return text if len(text) <= ECHO_LIMIT else f"{text[: ECHO_LIMIT - 3]}..."


def one_line(error: BaseException | str, lines: int | None = None) -> str:
    """An error's message on one line: its first ``lines`` lines (all by default) stripped, joined with ``" | "``.

    Example:
        >>> one_line(ValueError("bad value\\n  HINT: use 1")), one_line("Traceback:\\n  ...", lines=1)
        ('bad value | HINT: use 1', 'Traceback:')
    """
    kept = [line.strip() for line in str(error).splitlines() if line.strip()][:lines]
    return " | ".join(kept) or (type(error).__name__ if isinstance(error, BaseException) else "")


def span(low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False) -> str:
    """A range as an error message writes it: ``[1, inf)``, ``(0, 1]``; an infinite end is open.

    Example:
        >>> span(0, 1, low_open=True), span(1)
        ('(0, 1]', '[1, inf)')
    """
    left = "(" if low_open or math.isinf(low) else "["
    right = ")" if high_open or math.isinf(high) else "]"
    return f"{left}{_end(low)}, {_end(high)}{right}"


def _end(bound: float) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


def check_number(
    name: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    hint: str = "",
) -> Any:
    """Return ``value`` if it is a finite number (an int with ``integer``) in the range, else raise ``ArgumentError``.

    The message names ``name``, the range and the value, as every range check of the project words it.

    Example:
        >>> check_number("beta_1", 0.9, low=0.0, high=1.0, high_open=True)
        0.9
        >>> check_number("rounds", 0, low=1, integer=True)
        Traceback (most recent call last):
        ...
        callbacks.exceptions.ArgumentError: `rounds`: must be an int in [1, inf), got 0
    """
    kind = int if integer else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        what = "an int" if integer else "a number"
        where = span(low, high, low_open=low_open, high_open=high_open)
        raise ArgumentError(name, f"must be {what} in {where}, got {echo(value)}{'; ' + hint if hint else ''}")
    return value


def mismatch(value: Any, hint: Any) -> str:
    """What an error says of a ``value`` that does not fit the annotation ``hint``.

    Example:
        >>> mismatch("fast", float)
        "expected float, got str 'fast' (floats are written like 0.001 or 1e-3)"
    """
    message = f"expected {describe(hint)}, got {type(value).__name__} {echo(value)}"
    if not isinstance(value, str) or not matches(0.5, hint):
        return message
    try:
        float(value)
    except ValueError:
        return f"{message} (floats are written like 0.001 or 1e-3)"
    return f"{message} (a number as text: unquote it; yaml.safe_load reads 1e-3 as text, callbacks.load_yaml does not)"


def key_path(root: str | None, path: str | None) -> str | None:
    """A callback's path argument as its ``state_key`` holds it: relative to ``root``, if one is set.

    Whoever resolved the callback's relative path under a directory (the federated CLI: its
    ``output_dir``) sets ``state_root`` to that directory. The ``state_key`` then holds the path as
    configured, and a run directory resumes wherever it lies and however its path is spelled.

    Example:
        >>> key_path("runs/x", "runs/x/metrics.csv")
        'metrics.csv'
    """
    return path if root is None or path is None else os.path.relpath(path, root)


def suggest(name: str, choices: Sequence[str]) -> str:
    """Return ``" (did you mean `x`?)"`` for the closest of ``choices``, or ``""``."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean `{match[0]}`?)" if match else ""


def check_arguments(
    target: Callable[..., Any], args: Mapping[str, Any], path: str, elsewhere: Mapping[str, str] | None = None
) -> None:
    """Raise :class:`ConfigError` unless ``target(**args)`` names known arguments of fitting types.

    Args:
        target: A class (its ``__init__`` is read) or a function.
        args: The keyword arguments the configuration gives.
        path: The configuration path of ``args``, e.g. ``callbacks[1].args``.
        elsewhere: For names ``target`` does not take, where they belong, e.g.
            ``{"fraction_fit": " (Flower's `fraction_fit`; here it is `clients.fraction`)"}``:
            said instead of a close match. Defaults to none.
    """
    init = target.__init__ if inspect.isclass(target) else target
    params = {
        name: p
        for name, p in inspect.signature(init).parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL,)
    }
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = {n: p for n, p in params.items() if p.kind is not p.VAR_KEYWORD}
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # unresolvable annotations: check names only
        hints = {}
    for key, value in args.items():
        if not isinstance(key, str):
            raise ConfigError(f"argument names must be strings, got {echo(key)}", path)
        if key not in named:
            if takes_all:
                continue
            accepted = ", ".join(sorted(named)) or "none"
            instead = (elsewhere or {}).get(key) or suggest(key, list(named))
            raise ConfigError(f"unknown argument `{key}`{instead}; accepted: {accepted}", f"{path}.{key}")
        hint = hints.get(key)
        if hint is not None and not matches(value, hint):
            raise ConfigError(mismatch(value, hint), f"{path}.{key}")
    missing = [
        n for n, p in named.items() if p.default is p.empty and p.kind is not p.POSITIONAL_ONLY and n not in args
    ]
    if missing:
        raise ConfigError(f"missing required argument {', '.join(f'`{m}`' for m in missing)}", path)


def matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the annotation ``hint``, as far as YAML values can be checked."""
    if hint is Any or hint is object:
        return True
    origin = typing.get_origin(hint)
    targs = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in targs)
    if origin is typing.Literal:
        return value in targs
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (os.PathLike, os.PathLike[str]) or origin is os.PathLike:
        return isinstance(value, (str, os.PathLike))
    if origin in (list, Sequence, tuple, typing.Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and len(targs) == 2 and targs[1] is Ellipsis:
            return all(matches(v, targs[0]) for v in value)
        if origin is tuple and targs:
            return len(targs) == len(value) and all(matches(v, a) for v, a in zip(value, targs, strict=True))
        return not targs or all(matches(v, targs[0]) for v in value)
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            return False
        return len(targs) != 2 or all(matches(k, targs[0]) and matches(v, targs[1]) for k, v in value.items())
    if inspect.isclass(hint):
        return isinstance(value, hint)
    return True


def describe(hint: Any) -> str:
    """A short readable name for an annotation: ``int``, ``'min' or 'max'``, ``float or None``, ``a list of str``.

    Example:
        >>> describe(Sequence[str]), describe(int | None)
        ('a list of str', 'int or None')
    """
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        literals = [repr(v) for a in _flat(hint) if typing.get_origin(a) is typing.Literal for v in typing.get_args(a)]
        others = [describe(a) for a in _flat(hint) if typing.get_origin(a) is not typing.Literal]
        if literals:
            return "one of " + ", ".join(literals + others)
        return " or ".join(others)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "None"
    if origin in (list, tuple, Sequence, typing.Sequence) and len(typing.get_args(hint)) in (1, 2):
        item = typing.get_args(hint)[0]
        return f"a list of {describe(item)}"
    if origin is not None:
        return str(hint).replace("typing.", "")
    return getattr(hint, "__name__", str(hint))


def _flat(hint: Any) -> list[Any]:
    """The members of a (possibly nested) union annotation."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(hint) for m in _flat(a)]
    return [hint]
