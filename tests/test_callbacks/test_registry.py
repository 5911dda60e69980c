"""Registry and build_callbacks: names, import paths, order, seed 003's config and config errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from callbacks import (
    ArgumentError,
    Callback,
    ConfigError,
    EarlyStopping,
    LRScheduler,
    ModelCheckpoint,
    RegistryError,
    TensorBoard,
    build_callbacks,
    dump_yaml,
    load_yaml,
    register,
    registered,
    resolve,
)

# The configuration reference of seed 003 ("配置参考"), as it is written there.
SEED_003_REFERENCE = """
callbacks:
  - type: early_stopping
    args:
      patience: 10
      metric: accuracy
      mode: max

  - type: model_checkpoint
    args:
      save_dir: ./checkpoints
      save_best: true
      save_every: 10

  - type: lr_scheduler
    args:
      scheduler_type: cosine
      T_max: 100

  - type: tensorboard
    args:
      log_dir: ./runs
"""

TMP_MODULE = "bridge_test_tmp_callbacks"
TMP_SOURCE = """
from callbacks import Callback


class Notify(Callback):
    def __init__(self, url: str, retries: int = 3) -> None:
        self.url = url
        self.retries = retries
"""


@register("callback.test_registry_tagged")
class Tagged(Callback):
    """Registered at import time, as a user's module would."""

    def __init__(self, tag: str = "none") -> None:
        self.tag = tag


@pytest.fixture
def tmp_module(tmp_path, monkeypatch):
    """A module on sys.path that holds a callback class, for `pkg.module:Class` types."""
    (tmp_path / f"{TMP_MODULE}.py").write_text(TMP_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, TMP_MODULE, raising=False)
    return TMP_MODULE


def build_error(config):
    with pytest.raises(ConfigError) as info:
        build_callbacks(config)
    return str(info.value)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def test_register_refuses_a_duplicate_name():
    # Prepare
    class First(Callback):
        pass

    class Second(Callback):
        pass

    register("callback.test_registry_duplicate")(First)

    # Execute
    with pytest.raises(RegistryError, match=r"'callback\.test_registry_duplicate' is registered already, to .*First"):
        register("callback.test_registry_duplicate")(Second)

    # Assert: the first registration stands
    assert resolve("callback", "test_registry_duplicate") is First


BUILT_IN_NAME_TAKEN = """\
from callbacks import Callback, RegistryError, register

for name in ("callback.tensorboard", "callback.early_stopping"):
    try:
        @register(name)
        class Mine(Callback):
            pass
    except RegistryError as exc:
        print(exc)

from callbacks import TensorBoard, build_callbacks, resolve

assert resolve("callback", "tensorboard") is TensorBoard
assert type(build_callbacks(["tensorboard"])[0]) is TensorBoard
"""


def test_register_refuses_a_built_in_name_before_and_after_its_module_loads():
    # Execute: a fresh process, where callbacks.tensorboard is not imported yet
    completed = subprocess.run(
        [sys.executable, "-c", BUILT_IN_NAME_TAKEN], capture_output=True, text=True, timeout=120
    )

    # Assert: one line each, naming the built-in; the built-in still imports and builds
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == [
        "'callback.tensorboard' is the name of the built-in callbacks.tensorboard.TensorBoard; register "
        "__main__.Mine under another name, e.g. 'callback.my_tensorboard'",
        "'callback.early_stopping' is the name of the built-in callbacks.early_stopping.EarlyStopping; register "
        "__main__.Mine under another name, e.g. 'callback.my_early_stopping'",
    ]


def test_register_accepts_the_same_class_again():
    # Execute: a module imported twice registers its classes twice
    register("callback.test_registry_tagged")(Tagged)

    # Assert
    assert resolve("callback", "test_registry_tagged") is Tagged


@pytest.mark.parametrize("name", ["early_stopping", "callback.", ".early_stopping"])
def test_register_refuses_a_name_without_kind(name):
    with pytest.raises(RegistryError, match=r"a registry name is `kind\.name`"):
        register(name)


def test_register_refuses_what_cannot_be_called():
    with pytest.raises(RegistryError, match="only classes and factories can be registered"):
        register("callback.test_registry_not_callable")(42)


def test_registered_lists_the_builtins():
    # Execute
    names = registered("callback")

    # Assert
    assert {"early_stopping", "model_checkpoint", "lr_scheduler", "tensorboard", "metrics_logger"} <= set(names)
    assert names == sorted(names)


# --------------------------------------------------------------------------------------------
# build_callbacks
# --------------------------------------------------------------------------------------------


def test_build_callbacks_keeps_config_order():
    # Prepare
    config = [
        {"type": "tensorboard"},
        "test_registry_tagged",
        {"type": "early_stopping", "args": {"patience": 2}},
        {"type": "test_registry_tagged", "args": {"tag": "second"}},
    ]

    # Execute
    built = build_callbacks(config)

    # Assert
    assert [type(cb) for cb in built] == [TensorBoard, Tagged, EarlyStopping, Tagged]
    assert (built[1].tag, built[3].tag) == ("none", "second")


def test_build_callbacks_imports_a_type_path(tmp_module):
    # Prepare
    config = yaml.safe_load(f"- type: {tmp_module}:Notify\n  args: {{url: http://localhost/hook, retries: 5}}")

    # Execute
    (built,) = build_callbacks(config)

    # Assert
    assert type(built).__module__ == tmp_module
    assert type(built).__name__ == "Notify"
    assert (built.url, built.retries) == ("http://localhost/hook", 5)


def test_build_callbacks_imports_a_registered_class_by_its_path():
    # Execute
    (built,) = build_callbacks([{"type": f"{Tagged.__module__}:Tagged", "args": {"tag": "path"}}])

    # Assert
    assert isinstance(built, Tagged)
    assert built.tag == "path"


def test_build_callbacks_builds_nothing_from_none_or_an_empty_list():
    assert build_callbacks(None) == []
    assert build_callbacks([]) == []


def test_build_callbacks_builds_the_seed003_reference():
    # Prepare
    config = yaml.safe_load(SEED_003_REFERENCE)

    # Execute
    early, checkpoint, scheduler, board = build_callbacks(config["callbacks"])

    # Assert
    assert type(early) is EarlyStopping
    assert (early.patience, early.metric, early.mode, early.min_delta) == (10, "accuracy", "max", 0.0)
    assert type(checkpoint) is ModelCheckpoint
    assert (checkpoint.save_dir, checkpoint.save_best, checkpoint.save_every) == ("./checkpoints", True, 10)
    assert (checkpoint.metric, checkpoint.mode) == ("accuracy", "max")
    assert type(scheduler) is LRScheduler
    assert (scheduler.scheduler_type, scheduler.T_max) == ("cosine", 100)
    assert type(board) is TensorBoard
    assert board.log_dir == "./runs"
    assert board.writer is None  # nothing is opened before training starts


# --------------------------------------------------------------------------------------------
# Config errors: one line each, starting with the path
# --------------------------------------------------------------------------------------------

CONFIG_MISTAKES = {
    "unknown type": (
        [{"type": "early_stoping"}],
        "callbacks[0].type: unknown callback type 'early_stoping' (did you mean `early_stopping`?); known: ",
        ["early_stopping", "lr_scheduler", "metrics_logger", "model_checkpoint", "tensorboard", "pkg.module:Name"],
    ),
    "unknown argument": (
        [{"type": "tensorboard"}, {"type": "early_stopping", "args": {"patince": 3}}],
        "callbacks[1].args.patince: unknown argument `patince` (did you mean `patience`?); "
        "accepted: metric, min_delta, mode, patience",
        [],
    ),
    "wrong value type": (
        [{"type": "early_stopping", "args": {"patience": "ten"}}],
        "callbacks[0].args.patience: expected int, got str 'ten'",
        [],
    ),
    "bool is no float": (
        [{"type": "early_stopping", "args": {"min_delta": True}}],
        "callbacks[0].args.min_delta: expected float, got bool True",
        [],
    ),
    "wrong item type": (
        [{"type": "lr_scheduler", "args": {"milestones": [10, "x"]}}],
        "callbacks[0].args.milestones: expected a list of int or None, got list [10, 'x']",
        [],
    ),
    "bad value": (
        [{"type": "early_stopping", "args": {"mode": "maxx"}}],
        "callbacks[0].args.mode: expected one of 'min', 'max', got str 'maxx'",
        [],
    ),
    "bad scheduler type": (
        [{"type": "lr_scheduler", "args": {"scheduler_type": "cosin"}}],
        "callbacks[0].args.scheduler_type: expected one of 'step', 'multistep', 'exponential', 'cosine', "
        "'plateau', got str 'cosin'",
        [],
    ),
    "value out of range": (
        [{"type": "early_stopping", "args": {"patience": 0}}],
        "callbacks[0].args.patience: must be an int in [1, inf), got 0",
        [],
    ),
    "not a list": (
        {"type": "early_stopping"},
        "callbacks: expected a list of callback entries, got dict",
        [],
    ),
    "entry not a mapping": (
        [{"type": "tensorboard"}, 42],
        "callbacks[1]: expected a mapping with `type` and `args`, got int 42",
        [],
    ),
    "unknown entry key": (
        [{"type": "early_stopping", "arg": {"patience": 3}}],
        "callbacks[0]: unknown key `arg` (did you mean `args`?); accepted: type, args",
        [],
    ),
    "missing type": (
        [{"args": {"patience": 3}}],
        "callbacks[0]: missing `type`",
        [],
    ),
    "args not a mapping": (
        [{"type": "early_stopping", "args": [3]}],
        "callbacks[0].args: expected a mapping of arguments, got list [3]",
        [],
    ),
    "module not importable": (
        [{"type": "no_such_module_here:Thing"}],
        "callbacks[0].type: cannot import `no_such_module_here` (ModuleNotFoundError: ",
        [],
    ),
    "attribute missing": (
        [{"type": "callbacks:NoSuchCallback"}],
        "callbacks[0].type: module `callbacks` has no attribute `NoSuchCallback`",
        [],
    ),
    "not callable": (
        [{"type": "callbacks:HOOK_ARGUMENTS"}],
        "callbacks[0].type: `callbacks:HOOK_ARGUMENTS` is a dict, not a class or factory",
        [],
    ),
}


@pytest.mark.parametrize("mistake", list(CONFIG_MISTAKES))
def test_build_callbacks_reports_each_mistake_in_one_line_with_its_path(mistake):
    # Prepare
    config, start, also = CONFIG_MISTAKES[mistake]

    # Execute
    message = build_error(config)

    # Assert
    assert "\n" not in message
    assert message.startswith(start)
    for part in also:
        assert part in message


def test_build_callbacks_reports_a_missing_required_argument(tmp_module):
    # Execute
    message = build_error([{"type": "tensorboard"}, {"type": f"{tmp_module}:Notify", "args": {"retries": 1}}])

    # Assert
    assert message == "callbacks[1].args: missing required argument `url`"


def test_build_callbacks_error_keeps_the_path_and_the_cause():
    # Execute
    with pytest.raises(ConfigError) as info:
        build_callbacks([{"type": "early_stopping", "args": {"patience": 0}}], path="federation.callbacks")

    # Assert
    assert info.value.path == "federation.callbacks[0].args.patience"
    assert isinstance(info.value.__cause__, ArgumentError)
    assert isinstance(info.value, ValueError)  # callers catching ValueError still catch it


# --------------------------------------------------------------------------------------------
# The configuration loader and the echo of values in errors
# --------------------------------------------------------------------------------------------


def test_load_yaml_reads_scientific_notation_as_floats():
    # Prepare: YAML 1.1 (yaml.safe_load) reads all of these as strings
    text = "callbacks: [{type: early_stopping, args: {min_delta: 1e-3}}]\nvalues: [1E5, .5e-3, -2e+2, 1e, '1e3']\n"

    # Execute
    config = load_yaml(text)
    (early,) = build_callbacks(config["callbacks"])

    # Assert
    assert early.min_delta == 0.001
    assert config["values"] == [100000.0, 0.0005, -200.0, "1e", "1e3"]
    assert load_yaml(dump_yaml(config)) == config  # a string that looks like a float is quoted


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcdef", "bcdefg", strict=True)
        ), "the document stands for more than 100000 values (aliases included)"),
        ("a: &a [*a]\n", "the alias *a refers to itself"),
        ("a: " + "[" * 200 + "]" * 200 + "\n", "lists and mappings nest deeper than 100 levels"),
    ],
    ids=["billion-laughs", "recursive-alias", "deep-nesting"],
)
def test_load_yaml_refuses_a_document_beyond_its_bounds(text, problem):
    with pytest.raises(ConfigError) as info:
        load_yaml(text, "c.yaml")

    assert str(info.value).startswith("c.yaml: invalid YAML at line ")
    assert str(info.value).endswith(problem)


def test_build_callbacks_says_how_floats_are_written():
    # Execute: a number as text, as yaml.safe_load gives 1e-3, and a word
    as_text = build_error([{"type": "early_stopping", "args": {"min_delta": "1e-3"}}])
    word = build_error([{"type": "early_stopping", "args": {"min_delta": "small"}}])

    # Assert
    assert as_text.startswith("callbacks[0].args.min_delta: expected float, got str '1e-3' (a number as text: ")
    assert "callbacks.load_yaml" in as_text
    assert word == (
        "callbacks[0].args.min_delta: expected float, got str 'small' (floats are written like 0.001 or 1e-3)"
    )


def test_build_callbacks_cuts_an_echoed_value_short():
    message = build_error([{"type": "early_stopping", "args": {"patience": "x" * 100_000}}, list(range(10**5))])

    assert message.startswith("callbacks[0].args.patience: expected int, got str 'xxx")
    assert len(message) < 200


def test_resolve_reports_a_module_that_exits_while_imported(tmp_path, monkeypatch):
    (tmp_path / "bridge_test_exiting.py").write_text("import sys\n\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    message = build_error([{"type": "bridge_test_exiting:Thing"}])

    assert message == "callbacks[0].type: cannot import `bridge_test_exiting` (SystemExit: 3)"
