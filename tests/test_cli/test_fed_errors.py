"""A bad config or command line exits 2 with one line naming the key path; a failed training exits 1.

The table of malformed configs runs ``main`` in this process (each case costs milliseconds, where
a subprocess costs the torch and Lightning imports); the subprocess tests check the same contract
at the process level: the exit status, one stderr line, no traceback, untouched outputs.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cli_helpers import CLI, cli_env, populate, read_metrics, run_cli, small_config, snapshot, write_config

from lightning_bridge.fed import main

BROKEN_DATA = '''
def load(num_clients, seed):
    raise FileNotFoundError("no such file: 'clients.npz'")
'''

PLAIN_DATA = '''
from federated.data.datasets import digits


def load(num_clients, seed, noise: float = 0.0):
    return digits(num_clients=num_clients, partition="iid", seed=seed)
'''

ONE_FAILING_CLIENT = '''
import torch
from torch.utils.data import DataLoader, TensorDataset

from federated.data.datasets import digits


def load(num_clients, seed):
    data = digits(num_clients=num_clients, partition="iid", seed=seed)
    # the last client's labels are out of range: its fit raises in every round
    data.client_loaders[-1] = DataLoader(TensorDataset(torch.rand(8, 64), torch.full((8,), 99)), batch_size=4)
    return data
'''

EXPLODING_MODEL = '''
from federated.models import MLP


class Exploding(MLP):
    def training_step(self, batch, batch_idx):
        raise RuntimeError("exploded on purpose")
'''

EXITING_MODEL = '''
import sys

from federated.models import MLP


class Exiting(MLP):
    def training_step(self, batch, batch_idx):
        sys.exit(3)
'''


def _yaml(**overrides: object) -> str:
    return yaml.safe_dump(small_config(**overrides), sort_keys=False)


# (id, config text, extra command-line arguments, expected start of the message after "error: ")
MALFORMED = [
    ("unknown-key", _yaml(rouns=3), [], "rouns: unknown key (did you mean `rounds`?)"),
    (
        "unknown-nested-key",
        _yaml(data={"partition": {"type": "dirichlet", "alpah": 1.0}}),
        [],
        "data.partition.alpah: unknown key (did you mean `alpha`?)",
    ),
    ("wrong-type", _yaml(rounds="three"), [], "rounds: expected int, got str 'three'"),
    ("negative-rounds", _yaml(rounds=-3), [], "rounds: must be in [1, 9223372036854775807], got -3"),
    (
        "per-round-above-num-clients",
        _yaml(clients={"per_round": 5}),
        [],
        "clients.per_round: must be an int in [1, 4] (there are 4 clients)",
    ),
    ("fraction-out-of-range", _yaml(clients={"fraction": 1.5}), [], "clients.fraction: must be in (0, 1], got 1.5"),
    ("unknown-data-type", _yaml(data={"type": "digitz"}), [], "data.type: unknown data type 'digitz' (did you mean"),
    ("unknown-model-type", _yaml(model={"type": "mlpp"}), [], "model.type: unknown model type 'mlpp' (did you mean"),
    (
        "unknown-strategy",
        _yaml(strategy={"type": "fedavgg"}),
        [],
        "strategy.type: unknown strategy type 'fedavgg' (did you mean `fedavg`?)",
    ),
    (
        "unknown-callback",
        _yaml(callbacks=[{"type": "early_stoping"}]),
        [],
        "callbacks[0].type: unknown callback type 'early_stoping' (did you mean `early_stopping`?)",
    ),
    (
        "unknown-client-callback",
        _yaml(client_callbacks=[{"type": "tensorbord"}]),
        [],
        "client_callbacks[0].type: unknown callback type 'tensorbord' (did you mean `tensorboard`?)",
    ),
    (
        "bad-callback-argument",
        _yaml(callbacks=[{"type": "early_stopping", "args": {"patince": 3}}]),
        [],
        "callbacks[0].args.patince: unknown argument `patince` (did you mean `patience`?)",
    ),
    (
        "bad-callback-value",
        _yaml(callbacks=[{"type": "early_stopping", "args": {"mode": "maxx"}}]),
        [],
        "callbacks[0].args.mode: expected one of 'min', 'max', got str 'maxx'",
    ),
    (
        "yaml-syntax",
        "rounds: 3\ndata:\n  type: digits\n num_clients: 4\n",
        [],
        "c.yaml: invalid YAML at line 4, column 2: expected <block end>",
    ),
    ("top-level-list", "- rounds\n", [], "c.yaml: the top level must be a mapping of keys, got list"),
    ("set-syntax", _yaml(), ["--set", "rounds"], "--set: expected KEY.PATH=VALUE (a key path like"),
    (
        "set-unknown-key",
        _yaml(),
        ["--set", "clients.per_rnd=3"],
        "clients.per_rnd: unknown key (did you mean `per_round`?)",
    ),
    ("resume-missing", _yaml(), ["--resume", "nowhere.ckpt"], "--resume: no such checkpoint file or directory"),
    (
        "reserved-trainer-key",
        _yaml(trainer={"max_epochs": 3}),
        [],
        "trainer.max_epochs: is set by the federation from `local_epochs` (`clients.local_epochs` in YAML)",
    ),
    (
        "unknown-trainer-key",
        _yaml(trainer={"acelerator": "cpu"}),
        [],
        "trainer.acelerator: unknown argument `acelerator` (did you mean `accelerator`?)",
    ),
    ("model-args-type", _yaml(model={"args": {"hidden": "wide"}}), [], "model.args.hidden: expected int, got str"),
    (
        "model-not-a-lightning-module",
        _yaml(model={"type": "torch.nn:Linear"}),
        [],
        "model.type: `torch.nn:Linear` is the class Linear, not a lightning.LightningModule subclass",
    ),
    (
        "data-args-not-accepted",
        _yaml(data={"type": "plain_data:load", "num_clients": 4, "args": {"nosie": 0.1}}),
        [],
        "data.args.nosie: unknown argument `nosie` (did you mean `noise`?)",
    ),
    (
        "data-args-for-builtin-data",
        _yaml(data={"args": {"noise": 0.1}}),
        [],
        "data.args.noise: unknown argument `noise`; accepted: feature_skew",
    ),
    ("output-dir-is-a-file", _yaml(output_dir="c.yaml"), [], "output_dir: 'c.yaml' exists and is not a directory"),
    (
        "data-args-set-elsewhere",
        _yaml(data={"args": {"num_clients": 3}}),
        [],
        "data.args.num_clients: `num_clients` is set by `data.num_clients`; set it there",
    ),
    (
        "data-function-raises",
        _yaml(data={"type": "broken_data:load"}),
        [],
        "data: the data function `broken_data:load` raised FileNotFoundError: no such file: 'clients.npz'",
    ),
    *(
        (
            f"early-stopping-on-a-metric-no-round-reports-{backend}",
            _yaml(
                evaluate={"server": False},
                backend={"type": backend},
                callbacks=[{"type": "early_stopping", "args": {"metric": "accuracy", "mode": "max"}}],
            ),
            ["--validate"],
            "callbacks[0].args.metric: 'accuracy': `early_stopping` watches a metric no round of this config "
            "reports; the rounds report train_loss, lr; watch one of them",
        )
        for backend in ("sequential", "ray", "flower")
    ),
    (
        "model-checkpoint-on-client-metrics-with-no-client-evaluation",
        _yaml(
            callbacks=[
                {"type": "early_stopping", "args": {"metric": "val_loss"}},
                {"type": "model_checkpoint", "args": {"metric": "clients/accuracy"}},
            ]
        ),
        [],
        "callbacks[1].args.metric: 'clients/accuracy': `model_checkpoint` watches a metric no round of this config "
        "reports; the rounds report train_loss, lr, val_loss, accuracy; watch one of them",
    ),
    (
        "duplicate-callback-state",
        _yaml(callbacks=["early_stopping", "early_stopping"]),
        [],
        "callbacks: two callbacks share the state key",
    ),
]


@pytest.mark.parametrize(
    ("config", "extra", "expected"), [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED]
)
def test_fed_malformed_config_exits_2_with_one_line(
    config: str, extra: list[str], expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "broken_data.py").write_text(BROKEN_DATA)
    (tmp_path / "plain_data.py").write_text(PLAIN_DATA)
    write_config(tmp_path / "c.yaml", config)

    status = main(["--config", "c.yaml", *extra])

    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: {expected}"), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv",
    [["--set", "rounds=3"], ["--config", "c.yaml", "--rounds", "3"]],
    ids=["missing-config-option", "unknown-option"],
)
def test_fed_usage_error_exits_2_with_one_line(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)

    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert err.count("\n") == 1, err
    assert err.startswith("error: ") and "--help" in err


def test_fed_missing_config_file_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)

    status = main(["--config", "missing.yaml"])

    assert status == 2
    assert capsys.readouterr().err == "error: missing.yaml: cannot read the file (No such file or directory)\n"


def test_fed_validate_exits_0_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    populate(tmp_path / "out")
    write_config(tmp_path / "c.yaml", small_config())
    before = snapshot(tmp_path)

    status = main(["--config", "c.yaml", "--validate"])
    fresh = main(["--config", "c.yaml", "--validate", "--output-dir", "elsewhere"])

    out = capsys.readouterr().out
    assert status == fresh == 0
    assert out.startswith("config OK: 3 rounds, digits over 4 clients (iid), 2 per round")
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "elsewhere").exists()


def test_fed_bad_config_leaves_an_existing_output_directory_untouched(tmp_path: Path) -> None:
    # the last check of the preparation fails: data, model and every other callback are built by then
    populate(tmp_path / "out")
    write_config(tmp_path / "c.yaml", _yaml(callbacks=["early_stopping", "early_stopping"]))
    before = snapshot(tmp_path / "out")

    proc = run_cli(tmp_path, "--config", "c.yaml", "--output-dir", "out")

    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: callbacks: two callbacks share the state key")
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert snapshot(tmp_path / "out") == before


@pytest.mark.parametrize(
    ("kind", "source", "reported"),
    [
        ("exploding_model:Exploding", EXPLODING_MODEL, "RuntimeError: exploded on purpose"),
        ("exiting_model:Exiting", EXITING_MODEL, "SystemExit: 3 (the client's code called sys.exit)"),
    ],
    ids=["exception", "sys.exit"],
)
def test_fed_failure_in_a_client_fit_exits_1_with_one_line_naming_it(
    kind: str, source: str, reported: str, tmp_path: Path
) -> None:
    # Prepare: a model whose training_step raises, or calls sys.exit(3), in every client
    (tmp_path / f"{kind.partition(':')[0]}.py").write_text(source)
    write_config(tmp_path / "c.yaml", small_config(model={"type": kind, "args": {"hidden": 8}}))

    proc = run_cli(tmp_path, "--config", "c.yaml")

    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1, proc.stderr
    assert len(errors) == 1 and proc.stderr.splitlines()[-1] == errors[0]
    assert errors[0].startswith("error: training failed: round 1: 0 of 2 selected clients succeeded")
    assert "`min_clients=1`" in errors[0] and reported in errors[0]
    assert "Traceback" not in proc.stderr


def test_fed_round_left_too_small_for_krum_exits_1_with_one_line_saying_why(tmp_path: Path) -> None:
    # Prepare: Krum with f=1 needs 5 updates; all 5 clients are selected, and one fails
    (tmp_path / "one_failing_client.py").write_text(ONE_FAILING_CLIENT)
    config = small_config(
        data={"type": "one_failing_client:load", "num_clients": 5},
        clients={"per_round": 5},
        strategy={"type": "krum", "args": {"num_malicious_nodes": 1}},
    )
    write_config(tmp_path / "c.yaml", config)

    # Execute
    proc = run_cli(tmp_path, "--config", "c.yaml")

    # Assert
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1, proc.stderr
    assert errors == [
        "error: training failed: ValueError: round 1: Krum received 4 updates, but needs at least 5 "
        "(n >= 2f + 3, `num_malicious_nodes=1`): the round's other clients failed"
    ], proc.stderr
    assert proc.stderr.splitlines()[-1] == errors[0]
    assert "Traceback" not in proc.stderr


def test_fed_ctrl_c_exits_130_with_one_line(tmp_path: Path) -> None:
    # most of a round is spent inside a client's Lightning fit, which turns Ctrl-C into sys.exit(1)
    write_config(tmp_path / "c.yaml", small_config(rounds=1000))
    proc = subprocess.Popen(
        [*CLI, "--config", "c.yaml"], cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if (tmp_path / "out" / "metrics.csv").exists() and len(read_metrics(tmp_path / "out" / "metrics.csv")) >= 2:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, err
    assert err.splitlines()[-1] == "error: interrupted; continue with --resume auto (checkpoints in out)"
    assert "Traceback" not in err


def test_fed_help_shows_an_example(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])

    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert "example:" in out
    assert "python -m lightning_bridge.fed --config examples/fed.yaml" in out
    for option in ("--config", "--set", "--resume", "--output-dir", "--validate"):
        assert option in out


ANSWER_WITHOUT_TORCH = """
import runpy, sys
sys.argv = ["python -m lightning_bridge.fed", *sys.argv[1:]]
try:
    runpy.run_module("lightning_bridge.fed", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    print("exit", exc.code, sorted(m for m in ("federated", "lightning", "numpy", "torch") if m in sys.modules))
"""


@pytest.mark.parametrize(
    ("argv", "status"),
    [(["--help"], 0), (["--config", "c.yaml", "--rounds", "3"], 2), ([], 2)],
    ids=["help", "unknown-option", "no-config"],
)
def test_fed_help_and_usage_errors_import_no_torch(argv: list[str], status: int) -> None:
    # Execute: as `python -m lightning_bridge.fed` does, recording the heavy packages imported by the end
    proc = subprocess.run(
        [sys.executable, "-c", ANSWER_WITHOUT_TORCH, *argv], capture_output=True, text=True, timeout=120, check=False
    )

    # Assert
    assert proc.stdout.splitlines()[-1] == f"exit {status} []", proc.stdout + proc.stderr


CONFIG_ERRORS_WITHOUT_TORCH = [
    ("unknown-key", {}, ["--set", "rouns=5"], "rouns: unknown key (did you mean `rounds`?)"),
    ("out-of-range", {"rounds": 0}, [], "rounds: must be in [1, "),
    ("wrong-type", {"data": {"batch_size": "big"}}, [], "data.batch_size: expected int, got str 'big'"),
    ("both-per-round-and-fraction", {"clients": {"per_round": 2, "fraction": 0.5}}, [], "clients: give `per_round`"),
    ("bad-on-error", {"on_error": "ignore"}, ["--validate"], "on_error: can be 'warn' or 'raise'"),
]


@pytest.mark.parametrize(
    ("config", "argv", "message"),
    [case[1:] for case in CONFIG_ERRORS_WITHOUT_TORCH],
    ids=[case[0] for case in CONFIG_ERRORS_WITHOUT_TORCH],
)
def test_fed_config_schema_errors_import_no_torch(
    config: dict[str, object], argv: list[str], message: str, tmp_path: Path
) -> None:
    # Prepare
    write_config(tmp_path / "c.yaml", small_config(**config))

    # Execute: the schema's errors answer before torch and Lightning are imported
    proc = subprocess.run(
        [sys.executable, "-c", ANSWER_WITHOUT_TORCH, "--config", "c.yaml", *argv],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120, check=False,
    )

    # Assert
    exit_line = proc.stdout.splitlines()[-1]
    assert exit_line.startswith("exit 2 "), proc.stdout + proc.stderr
    assert not {"lightning", "numpy", "torch"} & set(ast.literal_eval(exit_line[len("exit 2 "):])), exit_line
    assert proc.stderr.startswith(f"error: {message}"), proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr


def test_fed_config_naming_a_fifo_exits_2_without_waiting(tmp_path: Path) -> None:
    # Prepare: nothing ever writes into the FIFO, so reading it would block
    os.mkfifo(tmp_path / "fed.yaml")

    # Execute
    proc = run_cli(tmp_path, "--config", "fed.yaml", timeout=60)

    # Assert
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == "error: fed.yaml: a FIFO; a configuration is read from a regular file\n"
