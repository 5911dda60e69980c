"""The built-ins' number arguments: a value out of range is refused with the argument, the range and the value."""

from __future__ import annotations

import pytest

from callbacks import ArgumentError, EarlyStopping, LRScheduler, ModelCheckpoint


@pytest.mark.parametrize(
    ("callback", "argument", "value", "problem"),
    [
        (EarlyStopping, "patience", 0, "must be an int in [1, inf), got 0"),
        (EarlyStopping, "patience", 2.5, "must be an int in [1, inf), got 2.5"),
        (EarlyStopping, "min_delta", -0.1, "must be a number in [0, inf), got -0.1"),
        (LRScheduler, "step_size", 0, "must be an int in [1, inf), got 0"),
        (LRScheduler, "T_max", 0, "must be an int in [1, inf), got 0"),
        (LRScheduler, "gamma", 0, "must be a number in (0, inf), got 0"),
        (LRScheduler, "factor", -0.5, "must be a number in (0, inf), got -0.5"),
        (ModelCheckpoint, "save_every", -1, "must be an int in [0, inf), got -1; 0 disables periodic saves"),
    ],
)
def test_builtin_rejects_numbers_out_of_range(callback, argument, value, problem):
    with pytest.raises(ArgumentError) as caught:
        callback(**{argument: value})
    assert (caught.value.argument, caught.value.problem) == (argument, problem)
