"""The callbacks package as a whole: no Lightning import, public names, pickling of the built-ins."""

from __future__ import annotations

import ast
import copy
import pathlib
import pickle
from types import SimpleNamespace

import pytest
import torch

import callbacks
from callbacks import CallbackManager, EarlyStopping, LRScheduler, MetricsLogger, ModelCheckpoint, TensorBoard

LIGHTNING = ("lightning", "pytorch_lightning")


def pickle_round_trip(obj):
    return pickle.loads(pickle.dumps(obj))


CLONES = [pickle_round_trip, copy.deepcopy]


def test_callbacks_import_loads_no_lightning(fresh_python):
    fresh_python(
        "import callbacks, sys",
        "assert not any(m.startswith(('lightning', 'pytorch_lightning')) for m in sys.modules)",
    )


def test_callbacks_import_loads_no_torch_until_a_builtin_needs_it(fresh_python):
    # the registry knows the torch-bound built-ins before they are imported
    fresh_python(
        "import callbacks, sys",
        "assert 'torch' not in sys.modules",
        "assert callbacks.build_callbacks(['tensorboard'])[0].log_dir == './runs'",
        "assert 'torch' in sys.modules",
        "from callbacks import LRScheduler, TensorBoard",
        "assert TensorBoard.__module__ == 'callbacks.tensorboard'",
        "assert 'lr_scheduler' in callbacks.registered('callback')",
    )


def test_callbacks_sources_import_no_lightning():
    # Prepare
    sources = sorted(pathlib.Path(callbacks.__file__).parent.glob("*.py"))

    # Execute
    offending = []
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module",
                "__import__",
            ):
                modules = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            else:
                continue
            offending += [f"{source.name}: {m}" for m in modules if m.split(".")[0] in LIGHTNING]

    # Assert
    assert len(sources) >= 10
    assert offending == []


def test_callbacks_public_names_resolve():
    # Assert (ruff's RUF022 keeps `__all__` sorted)
    assert len(set(callbacks.__all__)) == len(callbacks.__all__)
    assert dir(callbacks) == sorted(callbacks.__all__)
    for name in callbacks.__all__:
        assert getattr(callbacks, name) is not None


def fresh():
    return [
        EarlyStopping(patience=3, metric="val_loss", mode="min"),
        ModelCheckpoint(save_dir="ckpts", save_every=2),
        LRScheduler(scheduler_type="cosine", T_max=10),
        TensorBoard(log_dir="runs/x"),
        MetricsLogger(path=None),
    ]


def used(tmp_path):
    """The built-ins after a few rounds: with counters, histories, torch schedulers and an open writer."""
    built = [
        EarlyStopping(patience=3, metric="accuracy"),
        ModelCheckpoint(save_dir=str(tmp_path / "ckpts"), save_every=1),
        LRScheduler(scheduler_type="step", step_size=1, gamma=0.5),
        TensorBoard(log_dir=str(tmp_path / "tb")),
        MetricsLogger(path=str(tmp_path / "metrics.csv")),
    ]
    server = SimpleNamespace(
        is_global_zero=True, should_stop=False, save_checkpoint=lambda path, weights_only=False: None
    )
    manager = CallbackManager(built, on_error="raise")
    manager.call("on_train_start", trainer=server)
    for round_num, accuracy in ((1, 0.5), (2, 0.6)):
        manager.call("on_round_start", trainer=server, round_num=round_num)
        result = SimpleNamespace(metrics={"accuracy": accuracy}, updates=[])
        manager.call("on_round_end", trainer=server, round_num=round_num, result=result)
    return built


@pytest.mark.parametrize("clone", CLONES, ids=["pickle", "deepcopy"])
def test_builtins_copy_fresh(clone):
    for original in fresh():
        # Execute
        copied = clone(original)

        # Assert
        assert type(copied) is type(original)
        assert copied.state_key == original.state_key
        assert copied.state_dict() == original.state_dict()
        assert vars(copied).keys() == vars(original).keys()


@pytest.mark.parametrize("clone", CLONES, ids=["pickle", "deepcopy"])
def test_builtins_copy_mid_run(clone, tmp_path):
    # Prepare
    originals = used(tmp_path)

    # Execute
    copies = [clone(original) for original in originals]

    # Assert: same state; the copy's TensorBoard reopens its own writer when it starts
    for original, copied in zip(originals, copies, strict=True):
        assert copied.state_dict() == original.state_dict(), type(original).__name__
    assert originals[3].writer is not None
    assert copies[3].writer is None
    scheduler = copies[2]
    assert scheduler.schedulers[0].optimizer.param_groups[0]["lr"] == 0.25
    scheduler.on_round_start(SimpleNamespace(), 3)  # the copied torch scheduler still works
    assert isinstance(scheduler.schedulers[0].optimizer, torch.optim.SGD)
    originals[3].on_train_end()


def test_builtins_state_keys_tell_instances_apart():
    # Prepare
    keys = [cb.state_key for cb in fresh()]
    keys.append(EarlyStopping(metric="accuracy", mode="max").state_key)

    # Assert
    assert len(set(keys)) == len(keys)
