"""Hostile configs and command lines: exit 2, one short ``error:`` line with its key path, nothing written.

Each case runs ``main`` in this process next to an output directory an earlier run left, which must
stay as it was; a case may neither take much memory nor print a long line, whatever the YAML holds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import pytest
import torch
import yaml
from cli_helpers import CLI, cli_env, populate, small_config, snapshot, write_config

import federated.app.run  # noqa: F401 - imported before memory is traced
from lightning_bridge.fed import main

MAX_LINE = 400
"""The longest error line a case may print."""

MAX_PEAK_BYTES = 64 * 2**20
"""The most memory (Python allocations) a case may take."""

EXITING = '''
import sys

from callbacks import Callback


class Exit(Callback):
    def __init__(self, code: int = 3) -> None:
        sys.exit(code)


def data(num_clients, seed):
    sys.exit(4)
'''


def _yaml(**overrides: object) -> str:
    return yaml.safe_dump(small_config(**overrides), sort_keys=False)


def _bomb(levels: int = 9) -> str:
    """A "billion laughs" document of 1 KB: each level a list of nine aliases of the one before."""
    text = "lol0: &lol0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for i in range(1, levels):
        text += f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 9)}]\n"
    return text


def _merge_bomb(levels: int = 25) -> str:
    """Merge keys that double the mapping at each level."""
    text = "m0: &m0 {a: 1, b: 2}\n"
    for i in range(1, levels):
        text += f"m{i}: &m{i} {{<<: [*m{i - 1}], x{i}: *m{i - 1}, y{i}: *m{i - 1}}}\n"
    return text


VALIDATE = ["--validate"]  # a trainer that launches processes would start the tests again in each
NESTED = "[" * 5000 + "]" * 5000
TRAINER_HINT = "a client's fit runs on one device in this process"

# (id, config text or bytes, extra arguments, start of the message after "error: ", a part it must hold)
BAD_INPUTS = [
    ("seed-2**64", _yaml(seed=2**64), [], "seed: must be in [0, 4294967295], got 18446744073709551616", ""),
    ("seed-2**32", _yaml(seed=2**32), [], "seed: must be in [0, 4294967295], got 4294967296", ""),
    ("rounds-huge", _yaml(rounds=10**30), [], "rounds: must be in [1, 9223372036854775807]", ""),
    ("threads-huge", _yaml(threads=2**40), [], "threads: must be in [1, 1024]", ""),
    ("batch-size-huge", _yaml(data={"batch_size": 2**64}), [], "data.batch_size: must be in [1, ", ""),
    ("alpha-inf", _yaml(data={"partition": {"type": "dirichlet", "alpha": float("inf")}}), [],
     "data.partition.alpha: must be in (0, inf), got inf", ""),
    ("alpha-nan", _yaml(data={"partition": {"type": "dirichlet", "alpha": float("nan")}}), [],
     "data.partition.alpha: must be in (0, inf), got nan", ""),
    ("invalid-utf8", b"rounds: 3\nname: caf\xe9\n", [], "c.yaml: not UTF-8 text: line 2 holds the byte 0xe9", ""),
    ("too-large", "rounds: 3\n" + "# padding\n" * 120_000, [], "c.yaml: larger than 1048576 bytes", ""),
    ("alias-bomb", _bomb(), [], "c.yaml: invalid YAML at line ", "more than 100000 values"),
    ("merge-bomb", _merge_bomb(), [], "c.yaml: invalid YAML at line ", "more than 100000 values"),
    ("recursive-alias", "data: &d {args: *d}\n", [], "c.yaml: invalid YAML at line 1", "refers to itself"),
    ("nested-lists", f"data:\n  args: {{x: {NESTED}}}\n", [], "c.yaml: invalid YAML at line 2", "deeper than 100"),
    ("set-alias-bomb", _yaml(), ["--set", "data.args={" + _bomb().replace("\n", ", ") + "}"],
     "--set data.args: invalid YAML at line 1", "more than 100000 values"),
    ("set-nested-lists", _yaml(), ["--set", f"data.args.x={NESTED}"], "--set data.args.x: invalid YAML", "deeper"),
    ("set-dots", _yaml(), ["--set", "...=1"], "--set: expected KEY.PATH=VALUE", "'...=1'"),
    ("set-empty-part", _yaml(), ["--set", "clients..per_round=1"], "--set: expected KEY.PATH=VALUE", ""),
    ("set-index-first", _yaml(), ["--set", "[0]=1"], "--set: expected KEY.PATH=VALUE", ""),
    ("long-string-echo", _yaml(rounds="x" * 200_000), [], "rounds: expected int, got str 'xxx", "..."),
    ("long-list-echo", _yaml(rounds=list(range(50_000))), [], "rounds: expected int, got list [0, 1, 2", "..."),
    ("long-type-name", _yaml(model={"type": "os:" + "x" * 100_000}), [],
     "model.type: expected a model type name or an import path", "..."),
    ("bad-import-path", _yaml(model={"type": "a b:C" + "x" * 100_000}), [],
     "model.type: expected a model type name or an import path", "..."),
    ("callback-sys-exit", _yaml(callbacks=[{"type": "exiting:Exit"}]), [],
     "callbacks[0].args: `exiting:Exit` raised SystemExit: 3", ""),
    ("data-sys-exit", _yaml(data={"type": "exiting:data"}), [],
     "data: the data function `exiting:data` raised SystemExit: 4", ""),
    ("import-sys-exit", _yaml(model={"type": "exit_on_import:Model"}), [],
     "model.type: cannot import `exit_on_import` (SystemExit: 5)", ""),
    ("dp-sgd-negative-noise", _yaml(clients={"dp_sgd": {"noise_multiplier": -1.0}}), [],
     "clients.dp_sgd.noise_multiplier: must be in [0, inf), got -1.0", ""),
    ("dp-sgd-zero-clip", _yaml(clients={"dp_sgd": {"noise_multiplier": 1.0, "max_grad_norm": 0}}), [],
     "clients.dp_sgd.max_grad_norm: must be in (0, inf), got 0", ""),
    ("dp-sgd-delta-one", _yaml(clients={"dp_sgd": {"noise_multiplier": 1.0, "delta": 1.0}}), [],
     "clients.dp_sgd.delta: must be in (0, 1), got 1.0", ""),
    ("dp-sgd-without-noise", _yaml(clients={"dp_sgd": {"max_grad_norm": 2.0}}), [],
     "clients.dp_sgd.noise_multiplier: required to train with DP-SGD", ""),
    ("dp-sgd-unknown-key", _yaml(), ["--set", "clients.dp_sgd.sigma=1.0"],
     "clients.dp_sgd.sigma: unknown key", "accepted: noise_multiplier, max_grad_norm, delta, poisson_sampling"),
    ("dp-sgd-batch-norm", _yaml(clients={"dp_sgd": {"noise_multiplier": 1.0}}, model={"args": {"batch_norm": True}}),
     [], "model.type: its layer `net.bn` (_BatchNorm1d) cannot train with DP-SGD", "nn.GroupNorm"),
    ("float-as-text", _yaml(model={"args": {"lr": "fast"}}), [],
     "model.args.lr: expected float, got str 'fast' (floats are written like 0.001 or 1e-3)", ""),
    ("log-dir-outside", _yaml(callbacks=[{"type": "tensorboard", "args": {"log_dir": "../../x"}}]), [],
     "callbacks[0].args.log_dir: '../../x' leads outside output_dir", ""),
    ("client-path-outside", _yaml(client_callbacks=[{"type": "metrics_logger", "args": {"path": "a/../../m.csv"}}]),
     [], "client_callbacks[0].args.path: 'a/../../m.csv' leads outside output_dir", ""),
    ("devices-3", _yaml(trainer={"devices": 3}), VALIDATE, f"trainer.devices: 3 means 3 devices; {TRAINER_HINT}",
     "Ray"),
    ("devices-99", _yaml(trainer={"devices": 99}), VALIDATE, "trainer.devices: 99 means 99 devices", ""),
    ("devices-auto", _yaml(trainer={"devices": "auto"}), VALIDATE,
     f"trainer.devices: 'auto' takes every device of the machine that runs the client; {TRAINER_HINT}", ""),
    ("max-steps-float", _yaml(trainer={"max_steps": 1e30}), VALIDATE,
     "trainer.max_steps: 1e+30; accepted: an int >= 0, or -1", ""),
    ("strategy-ddp", _yaml(trainer={"strategy": "ddp"}), VALIDATE, "trainer.strategy: 'ddp' is DDPStrategy",
     TRAINER_HINT),
    ("strategy-ddp-spawn", _yaml(trainer={"strategy": "ddp_spawn"}), VALIDATE,
     "trainer.strategy: 'ddp_spawn' is DDPStrategy", ""),
    ("num-nodes-2", _yaml(trainer={"num_nodes": 2}), VALIDATE, f"trainer.num_nodes: 2 nodes; {TRAINER_HINT}", ""),
    ("flower-num-rounds", _yaml(num_rounds=3), [],
     "num_rounds: unknown key (Flower's `num_rounds`; here it is `rounds`)", ""),
    ("flower-fraction-fit", _yaml(clients={"fraction_fit": 0.5}), [],
     "clients.fraction_fit: unknown key (Flower's `fraction_fit`; here it is `clients.fraction`)", ""),
    ("flower-min-fit-clients", _yaml(clients={"min_fit_clients": 2}), [],
     "clients.min_fit_clients: unknown key (Flower's `min_fit_clients`; here it is `clients.per_round`)", ""),
    ("flower-fraction-evaluate", _yaml(clients={"fraction_evaluate": 0.5}), [],
     "clients.fraction_evaluate: unknown key (Flower's `fraction_evaluate`; here it is `evaluate.clients.fraction`)",
     ""),
    ("flower-strategy-fraction-fit", _yaml(strategy={"type": "fedavg", "args": {"fraction_fit": 0.5}}), [],
     "strategy.args.fraction_fit: unknown argument `fraction_fit` (Flower's `fraction_fit`; here it is "
     "`clients.fraction`); accepted: accumulate_dtype, local_keys, weighted", ""),
    ("flower-accept-failures", _yaml(strategy={"type": "fedavg", "args": {"accept_failures": False}}), [],
     "strategy.args.accept_failures: unknown argument `accept_failures` (Flower's `accept_failures`; here it is "
     "`clients.min_clients`", ""),
    ("flower-proximal-mu", _yaml(strategy={"type": "fedprox", "args": {"proximal_mu": 0.1}}), [],
     "strategy.args.proximal_mu: unknown argument `proximal_mu` (Flower's `proximal_mu`; here it is "
     "`strategy.args.mu` of `strategy.type: fedprox`); accepted: local_keys, mu", ""),
    ("flower-server-learning-rate", _yaml(strategy={"type": "fedavg", "args": {"server_learning_rate": 0.5}}), [],
     "strategy.args.server_learning_rate: unknown argument `server_learning_rate` (an argument of `fedavgm`)", ""),
    ("flower-eta", _yaml(strategy={"type": "fedavg", "args": {"eta": 0.1}}), [],
     "strategy.args.eta: unknown argument `eta` (an argument of `fedadagrad`, `fedadam`, `fedyogi`)", ""),
    ("krum-too-few-clients", _yaml(strategy={"type": "krum", "args": {"num_malicious_nodes": 1}}), [],
     "strategy.args.num_malicious_nodes: 1 needs at least 5 updates per round (n >= 2f + 3), but each round selects "
     "2 clients; select at least 5 or lower it", ""),
    ("krum-default-too-few-clients", _yaml(strategy={"type": "krum"}), [], "strategy.args.num_malicious_nodes: 0 "
     "needs at least 3 updates per round (n >= 2f + 3), but each round selects 2 clients; select at least 3", ""),
    ("bulyan-too-few-clients", _yaml(clients={"fraction": 1.0}, strategy={"type": "bulyan", "args": {
     "num_malicious_nodes": 1}}), [], "strategy.args.num_malicious_nodes: 1 needs at least 7 updates per round "
     "(n >= 4f + 3), but each round selects 4 clients", ""),
    ("multikrum-selects-more-than-sent", _yaml(clients={"per_round": 4}, strategy={"type": "multikrum", "args": {
     "num_nodes_to_select": 5}}), [], "strategy.args.num_nodes_to_select: 5 needs at least 5 updates per round "
     "(n >= num_nodes_to_select), but each round selects 4 clients; select at least 5 or lower it", ""),
    ("output-dir-below-a-file", _yaml(output_dir="c.yaml/runs"), [], "output_dir: cannot create 'c.yaml/runs'", ""),
    ("output-dir-under-proc", _yaml(output_dir="/proc/fed-runs"), [], "output_dir: cannot write under '/proc'", ""),
]
_UNWEIGHTED = {"type": "fedavg", "args": {"weighted": False}}
_PRIVATE = {"type": "server_fixed_clipping", "args": {"noise_multiplier": 1.0, "clipping_norm": 1.0}, "delta": 1e-3}
BAD_INPUTS += [
    ("privacy-negative-noise", _yaml(strategy=_UNWEIGHTED, privacy={**_PRIVATE, "args": {
     "noise_multiplier": -1, "clipping_norm": 1.0}}), [], "privacy.args.noise_multiplier: must be a number in [0, inf)",
     "got -1"),
    ("privacy-clipping-norm-0", _yaml(strategy=_UNWEIGHTED, privacy={**_PRIVATE, "args": {
     "noise_multiplier": 1.0, "clipping_norm": 0}}), [], "privacy.args.clipping_norm: must be a number in (0, inf)",
     ""),
    ("privacy-delta-1", _yaml(strategy=_UNWEIGHTED, privacy={**_PRIVATE, "delta": 1.0}), [],
     "privacy.delta: must be in (0, 1)", ""),
    ("privacy-account-of-weighted-mean", _yaml(privacy=_PRIVATE), [], "privacy.delta: the privacy account needs the "
     "unweighted mean", "weighted: false"),
    ("privacy-args-without-type", _yaml(privacy={"args": {"clipping_norm": 1.0}}), [],
     "privacy.args: is set, but `privacy.type` is not", ""),
    ("privacy-unknown-type", _yaml(privacy={"type": "gaussian"}), [], "privacy.type: ", "server_fixed_clipping"),
    ("privacy-sampled-clients-unequal", _yaml(strategy=_UNWEIGHTED, privacy={**_PRIVATE, "args": {
     "noise_multiplier": 1.0, "clipping_norm": 1.0, "num_sampled_clients": 3}}), [],
     "privacy.args.num_sampled_clients: is 3, but the federation samples 2 clients per round", ""),
    ("privacy-budget-spent-at-start", _yaml(strategy=_UNWEIGHTED, privacy=_PRIVATE, callbacks=[
     {"type": "privacy_budget", "args": {"max_epsilon": 0.5}}]), [], "callbacks[0].args.max_epsilon: is 0.5, and the "
     "first round alone spends epsilon", ""),
    ("privacy-budget-without-account", _yaml(callbacks=[{"type": "privacy_budget", "args": {"max_epsilon": 8}}]), [],
     "callbacks[0]: ", "privacy/epsilon"),
]
if not torch.cuda.is_available():
    BAD_INPUTS.append(
        ("accelerator-cuda", _yaml(trainer={"accelerator": "cuda"}), [], "trainer.accelerator: lightning.Trainer", "")
    )


@pytest.mark.parametrize(
    ("config", "extra", "expected", "part"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_fed_bad_input_exits_2_with_one_short_line_and_writes_nothing(
    config: str | bytes,
    extra: list[str],
    expected: str,
    part: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Prepare: the outputs of an earlier run, and the user modules some cases name
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "exiting.py").write_text(EXITING)
    (tmp_path / "exit_on_import.py").write_text("import sys\n\nsys.exit(5)\n")
    (tmp_path / "c.yaml").write_bytes(config if isinstance(config, bytes) else config.encode())
    populate(tmp_path / "out")
    before = snapshot(tmp_path)

    # Execute
    tracemalloc.start()
    try:
        status = main(["--config", "c.yaml", *extra])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    # Assert
    err = capsys.readouterr().err
    assert status == 2, err[:MAX_LINE]
    assert err.count("\n") == 1 and len(err) <= MAX_LINE, err[:MAX_LINE]
    assert err.startswith(f"error: {expected}"), err
    assert part in err
    assert peak < MAX_PEAK_BYTES
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "exit_on_import.py", "exiting.py", "out"]


def test_fed_read_only_output_dir_is_refused_up_front(tmp_path: Path) -> None:
    # Prepare: a read-only mount (in a mount namespace of its own) or, for a user, a folder without write permission
    read_only = tmp_path / "ro"
    read_only.mkdir()
    write_config(tmp_path / "c.yaml", small_config(output_dir=str(read_only / "runs")))
    command = [*CLI, "--config", "c.yaml", "--validate"]
    if os.geteuid() != 0:
        read_only.chmod(0o555)
    elif shutil.which("unshare") and subprocess.run(["unshare", "-m", "true"], check=False).returncode == 0:
        mount = f'mount -t tmpfs -o ro tmpfs "{read_only}" && exec "$@"'
        command = ["unshare", "-m", "sh", "-c", mount, "sh", *command]
    else:
        pytest.skip("root without mount namespaces: no read-only folder to try")

    # Execute
    proc = subprocess.run(command, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=180)

    # Assert
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: output_dir: cannot write under '{read_only}' ("), proc.stderr
    assert proc.stderr.count("\n") == 1
    assert list(read_only.iterdir()) == []


def test_fed_output_dir_check_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path / "c.yaml", small_config(output_dir="new/runs"))

    status = main(["--config", "c.yaml", "--validate"])

    assert status == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


SCIENTIFIC = """
rounds: 1
threads: 1
output_dir: out
data: {num_clients: 4, batch_size: 64, partition: {type: dirichlet, alpha: 5e-1}}
model: {type: mlp, args: {hidden: 16, lr: 2E-1}}
callbacks: [{type: early_stopping, args: {min_delta: 1e-3}}]
"""


def test_fed_scientific_notation_is_a_float(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    # Prepare: YAML 1.1 reads 5e-1, 2E-1, 1e-3 and .5e0 as strings
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path / "c.yaml", SCIENTIFIC)

    # Execute
    status = main(["--config", "c.yaml", "--set", "clients.fraction=.5e0"])

    # Assert: the resolved config holds the floats
    saved = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert status == 0, capsys.readouterr().err
    assert saved["data"]["partition"]["alpha"] == 0.5
    assert saved["model"]["args"]["lr"] == 0.2
    assert saved["callbacks"][0]["args"]["min_delta"] == 0.001
    assert saved["clients"]["fraction"] == 0.5
