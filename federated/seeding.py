"""A federation's seeds: the range of its ``seed``, the seed tree under it, and seeding the generators.

Every random draw of a federation comes from a seed derived from the run's ``seed`` and a path in
a tree (:func:`derive_seed`: round, purpose, client), so no draw depends on what ran before it.
The run's seed seeds NumPy's legacy generator and scikit-learn's ``random_state`` (the built-in data sets'
splits), which take 32-bit seeds, so a seed is an int in ``[0, 2**32 - 1]``, the range of
``lightning.seed_everything`` too. This module imports nothing heavy at import time: the config is checked
before torch loads.
"""

from __future__ import annotations

import random
from typing import Any

from federated.rules import SEED

__all__ = ["SEED_MAX", "check_seed", "derive_seed", "seed_everything"]

SEED_MAX = int(SEED.high)
"""The largest seed: NumPy's legacy generator and scikit-learn's ``random_state`` take 32 bits."""


def check_seed(value: Any, name: str = "seed") -> int:
    """Return ``value`` if it is an int in ``[0, SEED_MAX]``, else raise ``ArgumentError`` naming ``name``.

    Example:
        >>> check_seed(2**32)
        Traceback (most recent call last):
        ...
        callbacks.exceptions.ArgumentError: `seed`: must be an int in [0, 4294967295], got 4294967296
    """
    return int(SEED.check(name, value))


def seed_everything(seed: int, loader: Any = None) -> None:
    """Seed Python's, NumPy's and torch's generators, and ``loader``'s sampler generator if it has one."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    # the CPU generator directly: `torch.manual_seed` also queues lazy CUDA/XPU/MTIA seeding, formatting
    # a stack trace each time (about 1 ms, more than a small client's epoch)
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)
    generator = getattr(getattr(loader, "sampler", None), "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(seed)


def derive_seed(*words: int) -> int:
    """A 63-bit seed from a path in the seed tree, independent of everything run before.

    Example:
        >>> derive_seed(0, 1, 2) == derive_seed(0, 1, 2) != derive_seed(0, 1, 3)
        True
    """
    import numpy as np

    low, high = np.random.SeedSequence(list(words)).generate_state(2, dtype=np.uint32).tolist()
    return ((high & 0x7FFFFFFF) << 32) | low
