"""Public names loaded on first access (PEP 562), so that importing a package stays cheap."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, names: Mapping[str, str], public: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose ``names`` load from their modules on first access.

    Args:
        package: The package's ``__name__``.
        names: Public name -> the module that defines it.
        public: The package's ``__all__``.

    Example:
        >>> getattr_, dir_ = lazy_exports("pkg", {"sqrt": "math"}, ["sqrt"])
        >>> getattr_("sqrt")(4.0), dir_()
        (2.0, ['sqrt'])
    """
    listed = sorted(public)

    def get(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def names_of_package() -> list[str]:
        return listed

    return get, names_of_package
