"""The ranges of a federation's numbers, each written once.

``FederatedTrainer``'s argument checks, the data partitions and the YAML schema all read the ranges
here, so that a count, a fraction or a seed is accepted alike however it is given. Each speaks
its own words: a check raises :class:`~callbacks.ArgumentError` ("must be an int in [1, inf)"),
the schema, which has checked the type already, says "must be in [1, ...]" at the key path.
This module imports nothing heavy: the config is checked before torch loads.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from callbacks.arguments import check_number, span

__all__ = ["COUNT", "DELTA", "FRACTION", "HELD_OUT", "NON_NEGATIVE", "POSITIVE", "QUANTILE", "SEED", "Rule"]


@dataclass(frozen=True)
class Rule:
    """A range a number must lie in: ``[low, high]``, with ``(`` or ``)`` where an end is open.

    Args:
        low: The lowest value.
        high: The highest value. Defaults to `inf`.
        low_open: Whether ``low`` itself is out. Defaults to `False`.
        high_open: Whether ``high`` itself is out. Defaults to `False`.
        integer: Whether only ints are in. Defaults to `False`.

    Example:
        >>> COUNT.up_to(4).span()
        '[1, 4]'
        >>> FRACTION.check("clients_per_round", 1.5)
        Traceback (most recent call last):
        ...
        callbacks.exceptions.ArgumentError: `clients_per_round`: must be a number in (0, 1], got 1.5
    """

    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def check(self, name: str, value: Any, hint: str = "") -> Any:
        """Return ``value`` if it is a finite number (an int where ``integer``) in the range.

        Raises:
            ArgumentError: It is not, naming ``name``, the range and the value, and ending with ``hint``.
        """
        return check_number(
            name, value, low=self.low, high=self.high, low_open=self.low_open, high_open=self.high_open,
            integer=self.integer, hint=hint,
        )

    def contains(self, value: Any) -> bool:
        """Whether the number ``value`` is finite and lies in the range; whether it is an int is not looked at."""
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return bool(above and below)

    def span(self) -> str:
        """The range as messages write it: ``[1, inf)``, ``(0, 1]``."""
        return span(self.low, self.high, low_open=self.low_open, high_open=self.high_open)

    def up_to(self, high: float) -> Rule:
        """This range, ending at ``high`` (included) where that is lower than its own end."""
        return self if high >= self.high else dataclasses.replace(self, high=high, high_open=False)


COUNT = Rule(1, integer=True)
"""A count of rounds, epochs, clients, shards or samples: at least one."""

FRACTION = Rule(0, 1, low_open=True)
"""A share of the clients (those sampled per round, those evaluated): above 0, at most all."""

HELD_OUT = Rule(0, 1, high_open=True)
"""A share of the samples held out for testing or validation: none, but not all."""

POSITIVE = Rule(0, low_open=True)
"""A finite number above 0: a round's timeout in seconds, a Dirichlet partition's ``alpha``."""

NON_NEGATIVE = Rule(0)
"""A finite number of at least 0: a noise multiplier (0 adds no noise)."""

QUANTILE = Rule(0, 1)
"""A quantile or share that may be all or nothing: adaptive clipping's target share of clipped updates."""

DELTA = Rule(0, 1, low_open=True, high_open=True)
"""The delta of an (epsilon, delta) privacy guarantee: above 0, below 1 (commonly well under 1 / the clients)."""

SEED = Rule(0, 2**32 - 1, integer=True)
"""A seed: NumPy's legacy generator and scikit-learn's ``random_state`` take 32 bits."""
