"""Recognising OiaFed callbacks by their base class's module path, and loading OiaFed's callback modules."""

from __future__ import annotations

import importlib.util
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest

from callbacks import Callback, CallbackManager
from callbacks.oiafed import OiaFedCallback, is_oiafed_callback

needs_oiafed = pytest.mark.skipif(importlib.util.find_spec("oiafed") is None, reason="needs the oiafed extra")


def test_oiafed_nothing_imported_without_an_oiafed_callback(fresh_python: Callable[..., None]) -> None:
    fresh_python(
        "import sys",
        "from callbacks import CallbackManager, EarlyStopping",
        "import federated",
        "CallbackManager([EarlyStopping(metric='val_loss')])",
        "assert not any(name.split('.')[0] == 'oiafed' for name in sys.modules), sorted(sys.modules)",
    )


@needs_oiafed
def test_oiafed_callback_modules_load_without_the_package_init(fresh_python: Callable[..., None]) -> None:
    fresh_python(
        "import sys",
        "from callbacks.oiafed import import_oiafed, is_oiafed_callback",
        "builtin = import_oiafed('oiafed.callback.builtin')",
        "assert is_oiafed_callback(builtin.EarlyStopping())",
        "assert 'oiafed.runner' not in sys.modules and 'torchvision' not in sys.modules",
    )


def test_oiafed_recognised_by_base_module_path_only() -> None:
    lookalike = type("Callback", (), {"__module__": "elsewhere.callback.base"})
    oiafed_like = type("Callback", (), {"__module__": "oiafed.callback.base"})
    user = type("Mine", (oiafed_like,), {})

    assert is_oiafed_callback(user()) and not is_oiafed_callback(lookalike()) and not is_oiafed_callback(Callback())
    manager = CallbackManager([user(), Callback()])
    assert isinstance(manager.callbacks[0], OiaFedCallback) and type(manager.callbacks[1]) is Callback


@needs_oiafed
def test_oiafed_registry_names_and_import_paths_resolve_to_oiafeds_classes() -> None:
    from callbacks import resolve
    from callbacks.oiafed import OIAFED_CALLBACK_TYPES, import_oiafed

    builtin = import_oiafed("oiafed.callback.builtin")

    assert resolve("callback", "federated.callback.early_stopping") is builtin.EarlyStopping
    assert resolve("callback", "oiafed.callback.builtin:ModelCheckpoint") is builtin.ModelCheckpoint
    for name in OIAFED_CALLBACK_TYPES:
        assert resolve("callback", name).__module__.startswith("oiafed.callback.")


@needs_oiafed
def test_oiafed_callback_unpickles_in_a_fresh_process(fresh_python: Callable[..., None], tmp_path: Path) -> None:
    from callbacks.oiafed import import_oiafed

    builtin = import_oiafed("oiafed.callback.builtin")
    wrapped = OiaFedCallback(builtin.LoggingCallback(log_round=False))
    (tmp_path / "cb.pkl").write_bytes(pickle.dumps(wrapped))

    fresh_python(
        "import pickle, sys",
        f"wrapped = pickle.loads(open({str(tmp_path / 'cb.pkl')!r}, 'rb').read())",
        "assert type(wrapped.callback).__name__ == 'LoggingCallback' and wrapped.callback.log_round is False",
        "assert 'oiafed.runner' not in sys.modules",
    )


@needs_oiafed
def test_oiafed_callback_is_bound_only_to_the_native_hooks_its_own_hooks_need() -> None:
    # Prepare: an OiaFed callback with round hooks only, and one with a step hook
    from callbacks.oiafed import import_oiafed

    base = import_oiafed("oiafed.callback.base").Callback

    class RoundsOnly(base):  # type: ignore[misc, valid-type]
        async def on_round_end(self, trainer: object, round_num: int, context: object = None) -> None:
            pass

    class Steps(base):  # type: ignore[misc, valid-type]
        async def on_step_end(self, learner: object, step: int, metrics: object = None) -> None:
            pass

    # Execute
    rounds, steps = CallbackManager([RoundsOnly()]), CallbackManager([Steps()])

    # Assert: no per-batch dispatch for a callback without step hooks
    assert rounds.overrides("on_round_end") and not rounds.overrides("on_train_step_end")
    assert not rounds.overrides("on_batch_start") and not rounds.overrides("on_epoch_end")
    assert steps.overrides("on_train_step_end") and not steps.overrides("on_batch_start")
