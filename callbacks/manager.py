"""The dispatcher that every driver (the Lightning adapter, the federated loop) calls hooks through."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from callbacks._async import run_sync
from callbacks.callback import CONTEXT_ARGUMENTS, HOOK_ARGUMENTS, Callback
from callbacks.exceptions import HookSignatureError
from callbacks.oiafed.adapter import adapt

__all__ = ["CallbackManager", "OnError"]

log = logging.getLogger(__name__)

OnError = Literal["warn", "raise"]

_EVERY_CALLBACK_HOOKS = frozenset({"on_exception", "on_train_end"})
"""Hooks of the end of a run: every callback gets them, also after an earlier one raised."""


@dataclass(frozen=True)
class _Binding:
    """One overridden hook of one callback, with the argument names read from its signature."""

    callback: Any
    hook: str
    fn: Callable[..., Any]
    names: tuple[str, ...] | None  # None: the hook takes **kwargs and gets everything

    def kwargs(self, available: dict[str, Any]) -> dict[str, Any]:
        if self.names is None:
            return available
        return {name: available[name] for name in self.names if name in available}


class CallbackManager:
    """Calls the hooks of native callbacks in the order given, passing each the arguments it names.

    Each overridden hook's signature is read once, here: a parameter the event supplies is passed
    by name, ``**kwargs`` receives everything, a parameter with a default the event cannot supply
    keeps its default, and one without a default is refused at once with a
    :class:`~callbacks.HookSignatureError`. Hooks that no callback overrides cost one dict lookup.
    ``async def`` hooks are awaited in order, also when an event loop is already running.

    Args:
        callbacks: Native callbacks (subclasses of :class:`~callbacks.Callback`, or any object with
            hook methods of the same names), or OiaFed 0.2 callbacks, each of which runs wrapped
            in a :class:`~callbacks.oiafed.OiaFedCallback`. Defaults to no callbacks.
        on_error: ``"warn"`` logs a hook that raises (callback, hook, traceback) and goes on;
                ``"raise"`` re-raises; in ``on_exception`` and ``on_train_end`` only once every callback
            has had the hook, the first error then. ``KeyboardInterrupt`` and ``SystemExit`` always
            propagate. Defaults to ``"warn"``.

    Raises:
        HookSignatureError: A hook asks for an argument its event cannot supply.
        TypeError: An OiaFed callback this project cannot serve (see :func:`~callbacks.oiafed.adapt`).
        ValueError: ``on_error`` is neither ``"warn"`` nor ``"raise"``.

    Example:
        >>> from callbacks import Callback
        >>> class Seed000(Callback):
        ...     def on_train_start(self):
        ...         print("start")
        ...     def on_epoch_end(self, epoch, logs):
        ...         print(epoch, logs)
        >>> manager = CallbackManager([Seed000()])
        >>> manager.call("on_train_start", trainer=None)
        start
        >>> manager.call("on_epoch_end", epoch=0, logs={"val_loss": 0.1}, learner=None)
        0 {'val_loss': 0.1}
        >>> manager.overrides("on_batch_start")
        False
    """

    def __init__(self, callbacks: Iterable[Any] = (), *, on_error: OnError = "warn") -> None:
        if on_error not in ("warn", "raise"):
            raise ValueError(f"`on_error` can be 'warn' or 'raise', got {on_error!r}")
        self.callbacks: list[Any] = [adapt(callback) for callback in callbacks]
        self.on_error: OnError = on_error
        self._bindings: dict[str, tuple[_Binding, ...]] = {}
        for hook in HOOK_ARGUMENTS:
            bound = tuple(b for cb in self.callbacks if (b := _bind(cb, hook)) is not None)
            if bound:
                self._bindings[hook] = bound

    def __iter__(self) -> Iterator[Any]:
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def overrides(self, hook: str) -> bool:
        """Whether any callback overrides ``hook``: drivers skip building arguments when not."""
        return hook in self._bindings

    def call(self, hook: str, /, **available: Any) -> None:
        """Call ``hook`` on every callback that overrides it, in order.

        Args:
            hook: A hook name of :data:`~callbacks.HOOK_ARGUMENTS`.
            **available: Every argument the event supplies; each callback gets those it names.

        Raises:
            Exception: With ``on_error="raise"``, the first error a hook raised: at once, or, in
                ``on_exception`` and ``on_train_end``, after the hook has run on every callback.
        """
        first: Exception | None = None
        for binding in self._bindings.get(hook, ()):
            try:
                out = binding.fn(**binding.kwargs(available))
                if out is not None and inspect.isawaitable(out):
                    run_sync(out)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:
                error = self._handle(binding, available, exc)
                if error is exc and hook not in _EVERY_CALLBACK_HOOKS:
                    raise
                if error is not None and hook not in _EVERY_CALLBACK_HOOKS:
                    raise error from exc
                if error is not None and first is not None:
                    log.warning(
                        "Callback %s raised in %s too; the first error is raised once every callback has had it",
                        type(binding.callback).__name__,
                        hook,
                        exc_info=error,
                    )
                first = first or error
        if first is not None:
            raise first

    def _handle(self, binding: _Binding, available: dict[str, Any], exc: Exception) -> Exception | None:
        """The error to raise (``on_error="raise"``), or ``None`` once it is logged."""
        name = type(binding.callback).__name__
        if isinstance(exc, TypeError) and binding.names is not None:
            missing = _missing(binding, available)
            if missing:
                exc = HookSignatureError(
                    f"`{name}.{binding.hook}` needs {', '.join(f'`{m}`' for m in missing)}, which this "
                    f"event does not supply; it supplies: {', '.join(sorted(available)) or 'nothing'}"
                )
        if self.on_error == "raise":
            return exc
        log.warning(
            "Callback %s raised in %s; training goes on (on_error='raise' makes this fatal)",
            name,
            binding.hook,
            exc_info=exc,
        )
        return None


def _overridden(callback: Any, hook: str) -> Callable[..., Any] | None:
    """``callback``'s ``hook``, unless it does not override it or narrows itself to other hooks.

    A wrapper that defines every hook but serves only some (:class:`~callbacks.oiafed.OiaFedCallback`)
    names those in ``served_hooks``; the others are never bound, so drivers skip them as for a
    callback that does not define them (no per-batch work for a hook nobody serves).
    """
    served = getattr(callback, "served_hooks", None)
    if served is not None and hook not in served:
        return None
    fn = getattr(callback, hook, None)
    if not callable(fn):
        return None
    if isinstance(callback, Callback) and getattr(type(callback), hook, None) is getattr(Callback, hook):
        return None
    return fn


def _bind(callback: Any, hook: str) -> _Binding | None:
    fn = _overridden(callback, hook)
    if fn is None:
        return None
    supplied = (*HOOK_ARGUMENTS[hook], *CONTEXT_ARGUMENTS)
    names: list[str] = []
    takes_all = False
    for param in inspect.signature(fn).parameters.values():
        if param.kind is param.VAR_KEYWORD:
            takes_all = True
        elif param.kind is param.VAR_POSITIONAL:
            continue
        elif param.name in supplied and param.kind is not param.POSITIONAL_ONLY:
            names.append(param.name)
        elif param.default is param.empty:
            raise HookSignatureError(
                f"`{type(callback).__name__}.{hook}` asks for `{param.name}`, which `{hook}` cannot "
                f"supply; it supplies: {', '.join(sorted(set(supplied)))}. HINT: give `{param.name}` "
                "a default or take `**kwargs`"
            )
    return _Binding(callback, hook, fn, None if takes_all else tuple(names))


def _missing(binding: _Binding, available: dict[str, Any]) -> Sequence[str]:
    params = inspect.signature(binding.fn).parameters.values()
    return [
        p.name
        for p in params
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in available
    ]
