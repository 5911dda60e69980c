"""The lightning_bridge package as a whole: Lightning loads on first access of a public name."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import lightning_bridge


def test_lightning_bridge_import_loads_no_lightning_until_a_public_name_is_used(
    fresh_python: Callable[..., None],
) -> None:
    fresh_python(
        "import sys, lightning_bridge",
        "assert not any(m == 'lightning' or m.startswith('lightning.') for m in sys.modules)",
        "assert 'torch' not in sys.modules",
        "from lightning_bridge import LightningCallbackAdapter",
        "assert LightningCallbackAdapter.__module__ == 'lightning_bridge.adapter'",
        "assert 'lightning' in sys.modules",
    )


def test_lightning_bridge_lists_and_resolves_its_public_names():
    # Assert
    assert dir(lightning_bridge) == sorted(lightning_bridge.__all__)
    for name in lightning_bridge.__all__:
        assert getattr(lightning_bridge, name).__name__ == name
    with pytest.raises(AttributeError, match="module 'lightning_bridge' has no attribute 'Adapter'"):
        lightning_bridge.Adapter  # noqa: B018
