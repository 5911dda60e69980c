"""EarlyStopping through CallbackManager, with stand-in trainers (the real Trainer is tested elsewhere)."""

from __future__ import annotations

import copy
import re
from types import SimpleNamespace

import pytest

from callbacks import CallbackManager, EarlyStopping, MetricNotFoundError


def server():
    return SimpleNamespace(should_stop=False)


def started(stop):
    """A dispatcher of ``stop`` alone, raising its errors, and a stand-in trainer, after ``on_train_start``."""
    manager, trainer = CallbackManager([stop], on_error="raise"), server()
    manager.call("on_train_start", trainer=trainer)
    return manager, trainer


def run_rounds(manager, trainer, values, metric="accuracy", first_round=1):
    """Feed round metrics until the trainer stops; return the rounds that ran."""
    ran = []
    for round_num, value in enumerate(values, start=first_round):
        manager.call("on_round_start", trainer=trainer, round_num=round_num)
        result = SimpleNamespace(metrics={metric: value}, updates=[])
        manager.call("on_round_end", trainer=trainer, round_num=round_num, result=result)
        ran.append(round_num)
        if trainer.should_stop:
            break
    return ran


def run_epochs(manager, trainer, values, metric="val_loss"):
    ran = []
    for epoch, value in enumerate(values):
        manager.call("on_validation_end", trainer=trainer, epoch=epoch, logs={metric: value})
        manager.call("on_epoch_end", trainer=trainer, epoch=epoch, logs={metric: value})
        ran.append(epoch)
        if trainer.should_stop:
            break
    return ran


def test_early_stopping_stops_after_patience_rounds_without_improvement():
    # Prepare
    stop = EarlyStopping(patience=2, metric="accuracy", mode="max")
    manager, trainer = started(stop)

    # Execute
    ran = run_rounds(manager, trainer, [0.5, 0.6, 0.6, 0.55, 0.9])

    # Assert
    assert ran == [1, 2, 3, 4]
    assert trainer.should_stop
    assert (stop.best, stop.counter, stop.stopped_at) == (0.6, 2, 4)


def test_early_stopping_min_mode_on_validation_end():
    # Prepare
    stop = EarlyStopping(patience=1, metric="val_loss", mode="min")
    manager, trainer = started(stop)

    # Execute
    ran = run_epochs(manager, trainer, [0.9, 0.5, 0.4, 0.45, 0.1])

    # Assert: epochs count from 0
    assert ran == [0, 1, 2, 3]
    assert (stop.best, stop.stopped_at) == (0.4, 3)


def test_early_stopping_min_delta_ignores_small_gains():
    # Prepare
    stop = EarlyStopping(patience=2, metric="accuracy", mode="max", min_delta=0.05)
    manager, trainer = started(stop)

    # Execute: +0.04 and +0.08 over 0.50 (the best stays 0.50 until 0.58)
    ran = run_rounds(manager, trainer, [0.50, 0.54, 0.58, 0.60, 0.62])

    # Assert
    assert ran == [1, 2, 3, 4, 5]
    assert (stop.best, stop.counter) == (0.58, 2)
    assert trainer.should_stop


def test_early_stopping_never_stops_while_improving():
    # Prepare
    stop = EarlyStopping(patience=1, metric="accuracy")
    manager, trainer = started(stop)

    # Execute
    ran = run_rounds(manager, trainer, [0.1, 0.2, 0.3, 0.4])

    # Assert
    assert ran == [1, 2, 3, 4]
    assert not trainer.should_stop
    assert stop.stopped_at is None


def test_early_stopping_state_round_trip_resumes_where_it_was():
    # Prepare: an uninterrupted run, and one stopped after round 2 and resumed in a new object
    values = [0.5, 0.7, 0.6, 0.65, 0.6, 0.8]
    whole = EarlyStopping(patience=3, metric="accuracy")
    whole_manager, whole_trainer = started(whole)
    whole_ran = run_rounds(whole_manager, whole_trainer, values)

    first = EarlyStopping(patience=3, metric="accuracy")
    first_manager = CallbackManager([first], on_error="raise")
    first_manager.call("on_train_start", trainer=server())
    run_rounds(first_manager, server(), values[:3])
    state = copy.deepcopy(first.state_dict())

    # Execute: restore, then start training again (on_train_start must not wipe what was restored)
    resumed = EarlyStopping(patience=3, metric="accuracy")
    resumed.load_state_dict(state)
    resumed_manager, resumed_trainer = started(resumed)
    resumed_ran = run_rounds(resumed_manager, resumed_trainer, values[3:], first_round=4)

    # Assert
    assert state == {"best": 0.7, "counter": 1, "stopped_at": None, "patience": 3}
    assert whole_ran == [1, 2, 3, 4, 5]
    assert resumed_ran == [4, 5]
    assert resumed.state_dict() == whole.state_dict()
    assert resumed_trainer.should_stop


def test_early_stopping_state_round_trip_gives_back_the_saved_patience():
    # Prepare: patience 2, and one round without improvement so far
    saved = EarlyStopping(patience=2, metric="accuracy")
    manager = CallbackManager([saved], on_error="raise")
    manager.call("on_train_start", trainer=server())
    run_rounds(manager, server(), [0.5, 0.4])
    state = copy.deepcopy(saved.state_dict())

    # Execute: the state goes into an EarlyStopping built with another patience
    resumed = EarlyStopping(patience=10, metric="accuracy")
    resumed.load_state_dict(copy.deepcopy(state))
    restored = resumed.state_dict()
    resumed_manager, trainer = started(resumed)
    ran = run_rounds(resumed_manager, trainer, [0.45, 0.3], first_round=3)

    # Assert: what was saved comes back, and the saved patience decides: the next miss stops
    assert state == {"best": 0.5, "counter": 1, "stopped_at": None, "patience": 2}
    assert restored == state
    assert ran == [3]
    assert (resumed.stopped_at, trainer.should_stop) == (3, True)


def test_early_stopping_fresh_start_resets_the_counters():
    # Prepare: a run that stopped
    stop = EarlyStopping(patience=1, metric="accuracy")
    manager = CallbackManager([stop], on_error="raise")
    manager.call("on_train_start", trainer=server())
    run_rounds(manager, server(), [0.5, 0.4])

    # Execute: a new run with the same object
    manager.call("on_train_start", trainer=server())

    # Assert
    assert (stop.best, stop.counter, stop.stopped_at) == (None, 0, None)


def test_early_stopping_missing_metric_lists_the_reported_ones():
    # Prepare
    manager = CallbackManager([EarlyStopping(metric="accuracy")], on_error="raise")
    result = SimpleNamespace(metrics={"val_loss": 0.2, "loss": 0.3}, updates=[])

    # Execute / Assert
    with pytest.raises(MetricNotFoundError, match=r"watches `accuracy`.*available: loss, val_loss\. HINT"):
        manager.call("on_round_end", trainer=server(), round_num=1, result=result)


def test_early_stopping_nan_is_no_improvement():
    # Prepare
    stop = EarlyStopping(patience=2, metric="val_loss", mode="min")
    manager, trainer = started(stop)

    # Execute
    ran = run_epochs(manager, trainer, [0.5, float("nan"), float("nan")])

    # Assert
    assert ran == [0, 1, 2]
    assert stop.best == 0.5
    assert trainer.should_stop


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "maxx"}, "`mode` can be 'min' or 'max', got 'maxx'"),
        ({"metric": ""}, "`metric` must be a non-empty metric name"),
    ],
)
def test_early_stopping_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        EarlyStopping(**kwargs)
