"""The range of a federation's ``seed``, checked where a seed enters (the YAML config, the Python API).

A seed seeds NumPy's legacy generator and scikit-learn's ``random_state`` (the built-in data sets'
splits), which take 32-bit seeds, so a seed is an int in ``[0, 2**32 - 1]``, the range of
``lightning.seed_everything`` too. This module imports nothing heavy: the config is checked
before torch loads.
"""

from __future__ import annotations

from typing import Any

from callbacks.arguments import check_number

__all__ = ["SEED_MAX", "check_seed"]

SEED_MAX = 2**32 - 1
"""The largest seed: NumPy's legacy generator and scikit-learn's ``random_state`` take 32 bits."""


def check_seed(value: Any, name: str = "seed") -> int:
    """Return ``value`` if it is an int in ``[0, SEED_MAX]``, else raise ``ArgumentError`` naming ``name``.

    Example:
        >>> check_seed(2**32)
        Traceback (most recent call last):
        ...
        callbacks.exceptions.ArgumentError: `seed`: must be an int in [0, 4294967295], got 4294967296
    """
    return int(check_number(name, value, low=0, high=SEED_MAX, integer=True))
