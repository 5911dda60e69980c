"""The clients' side from YAML: federated evaluation without a test set, personal clients, and the new keys' errors.

``examples/fed_clients_evaluate.yaml`` and ``examples/fed_personal.yaml`` run end to end with fewer
rounds; every new key (``data.val_fraction``, ``evaluate``, ``clients.keep_optimizer_state``,
``clients.round_timeout``, ``strategy.args.local_keys``) refuses a bad value with one ``error:``
line naming its key path, exit status 2 and nothing written.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from cli_helpers import REPO, populate, read_metrics, run_cli, scalars, small_config, snapshot

from lightning_bridge.fed import main

EVALUATE = REPO / "examples" / "fed_clients_evaluate.yaml"
PERSONAL = REPO / "examples" / "fed_personal.yaml"
MAX_LINE = 400
"""The longest error line a bad value may print."""


def _history(out: Path) -> list[dict[str, Any]]:
    with open(out / "checkpoints" / "history.jsonl") as f:
        return [json.loads(line) for line in f]


def _weighted(pairs: list[tuple[int, float]]) -> float:
    return sum(n * v for n, v in pairs) / sum(n for n, _ in pairs)


def _stop_round(values: list[float], patience: int, rounds: int) -> int:
    """The round early stopping (mode max, min_delta 0) ends a run of ``rounds`` on, given each round's value."""
    best, wait = float("-inf"), 0
    for round_num, value in enumerate(values, start=1):
        if value > best:
            best, wait = value, 0
        else:
            wait += 1
            if wait >= patience:
                return round_num
    return rounds


# ------------------------------------------------------------------ federated evaluation, no test set


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """``fed_clients_evaluate.yaml`` in 6 rounds, stopping after one round without a better ``clients/accuracy``."""
    cwd = tmp_path_factory.mktemp("clients_evaluate")
    proc = run_cli(
        cwd, "--config", str(EVALUATE), "--set", "output_dir=out", "--set", "rounds=6",
        "--set", "callbacks[0].args.patience=1",
    )
    return cwd / "out", proc


def test_fed_clients_evaluate_writes_clients_accuracy_to_metrics_csv(
    evaluated: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, proc = evaluated

    rows = read_metrics(out / "metrics.csv")
    assert proc.returncode == 0, proc.stderr
    assert "clients/accuracy" in rows[0]
    assert all(0 < float(row["clients/accuracy"]) <= 1 for row in rows)
    # the aggregate is the sample-weighted mean of the evaluating clients: half of the 10, each round
    for row, record in zip(rows, _history(out), strict=True):
        evaluations = record["evaluations"]
        assert len(evaluations) == 5
        expected = _weighted([(e["num_samples"], e["metrics"]["accuracy"]) for e in evaluations])
        assert float(row["clients/accuracy"]) == pytest.approx(expected)


def test_fed_clients_evaluate_has_no_server_test_split(
    evaluated: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, proc = evaluated

    config = yaml.safe_load((out / "config.yaml").read_text())
    rows = read_metrics(out / "metrics.csv")
    assert proc.returncode == 0, proc.stderr
    assert config["data"]["test_fraction"] == 0 and config["data"]["val_fraction"] == 0.2
    # `accuracy` is no server evaluation: it is the clients' local validation after their fits, averaged
    for row, record in zip(rows, _history(out), strict=True):
        updates = record["updates"]
        expected = _weighted([(u["num_samples"], u["metrics"]["accuracy"]) for u in updates])
        assert float(row["accuracy"]) == pytest.approx(expected)


def test_fed_clients_evaluate_stops_on_clients_accuracy_as_configured(
    evaluated: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, proc = evaluated

    config = yaml.safe_load((out / "config.yaml").read_text())
    rows = read_metrics(out / "metrics.csv")
    stopping = config["callbacks"][0]
    values = [float(row["clients/accuracy"]) for row in rows]
    ran = _stop_round(values, stopping["args"]["patience"], config["rounds"])
    assert proc.returncode == 0, proc.stderr
    assert stopping["type"] == "early_stopping" and stopping["args"]["metric"] == "clients/accuracy"
    assert [int(row["round"]) for row in rows] == list(range(1, ran + 1))
    early = " (stopped early by a callback)" if ran < config["rounds"] else ""
    assert f"rounds run: {ran} of {config['rounds']}{early}\n" in proc.stdout
    assert f"best clients/accuracy: {max(values):.4f}" in proc.stdout


def test_fed_clients_evaluate_logs_each_clients_evaluation_to_tensorboard(
    evaluated: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, proc = evaluated

    history = _history(out)
    assert proc.returncode == 0, proc.stderr
    for client_id in sorted({e["client_id"] for record in history for e in record["evaluations"]}):
        expected = [
            (record["round_num"], e["metrics"]["accuracy"])
            for record in history
            for e in record["evaluations"]
            if e["client_id"] == client_id
        ]
        points = scalars(out / "tensorboard", f"client/{client_id}/evaluate/accuracy")
        assert [step for step, _ in points] == [step for step, _ in expected]
        assert [value for _, value in points] == pytest.approx([value for _, value in expected])


# ------------------------------------------------------------------ personal clients, resumed


def _run_personal(cwd: Path, out: str, rounds: int, *extra: str) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        status = main(["--config", str(PERSONAL), "--set", f"output_dir={out}", "--set", f"rounds={rounds}", *extra])
    assert status == 0


@pytest.fixture(scope="module")
def personal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``fed_personal.yaml``: 4 rounds in ``full``, 2 in ``short``, 2 then ``--resume auto`` to 4 in ``resumed``."""
    cwd = tmp_path_factory.mktemp("personal")
    _run_personal(cwd, "full", 4)
    _run_personal(cwd, "short", 2)
    _run_personal(cwd, "resumed", 2)
    _run_personal(cwd, "resumed", 4, "--resume", "auto")
    return cwd


def _checkpoint(out: Path) -> dict[str, Any]:
    return torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "final_weights.pt", weights_only=True)


def test_fed_personal_checkpoint_holds_each_clients_optimizer_and_local_weights(personal: Path) -> None:
    ckpt = _checkpoint(personal / "full")

    trained = {u["client_id"] for record in _history(personal / "full") for u in record["updates"]}
    global_weights = _weights(personal / "full")
    assert ckpt["format"] == "federated/3"
    assert trained and set(ckpt["clients"]) == trained  # a client that never trained has nothing to keep
    for client_id in trained:
        state = ckpt["clients"][client_id]
        optimizer = state["optimizer"]["optimizers"][0]
        assert optimizer["param_groups"][0]["momentum"] == 0.9
        assert all("momentum_buffer" in s for s in optimizer["state"].values())
        assert sorted(state["local_weights"]) == ["net.0.bias", "net.0.weight"]
        assert not torch.equal(state["local_weights"]["net.0.weight"], global_weights["net.0.weight"])


def test_fed_personal_global_model_keeps_its_initial_local_keys(personal: Path) -> None:
    short, full = _weights(personal / "short"), _weights(personal / "full")

    assert torch.equal(short["net.0.weight"], full["net.0.weight"])  # never aggregated: as initialised
    assert torch.equal(short["net.0.bias"], full["net.0.bias"])
    assert not torch.equal(short["net.2.weight"], full["net.2.weight"])  # aggregated each round


def test_fed_personal_resume_auto_ends_as_the_uninterrupted_run(personal: Path) -> None:
    full, resumed = personal / "full", personal / "resumed"

    a, b = _weights(full), _weights(resumed)
    clients_a, clients_b = _checkpoint(full)["clients"], _checkpoint(resumed)["clients"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert clients_a.keys() == clients_b.keys()
    for client_id, state in clients_a.items():
        kept = clients_b[client_id]
        assert all(torch.equal(t, kept["local_weights"][k]) for k, t in state["local_weights"].items())
        moments = state["optimizer"]["optimizers"][0]["state"]
        resumed_moments = kept["optimizer"]["optimizers"][0]["state"]
        assert all(torch.equal(s["momentum_buffer"], resumed_moments[i]["momentum_buffer"]) for i, s in moments.items())
    assert read_metrics(full / "metrics.csv") == read_metrics(resumed / "metrics.csv")


# ------------------------------------------------------------------ bad values of the new keys


def _yaml(val_fraction: float | None = None, **overrides: Any) -> str:
    """The small federation of the CLI tests; with ``val_fraction``, each client holds validation data."""
    config = small_config(**overrides)
    if val_fraction is not None:
        config["data"] = {**config["data"], "val_fraction": val_fraction}
    return yaml.safe_dump(config, sort_keys=False)


def _evaluate(**clients: Any) -> str:
    return _yaml(val_fraction=0.2, evaluate={"clients": clients})


def _strategy(**args: Any) -> str:
    return _yaml(strategy={"type": "fedavg", "args": args})


def _clients(**clients: Any) -> str:
    return _yaml(clients={"per_round": 2, **clients})


RANGE = "must be in [1, 9223372036854775807], got 0"
GLOBS = "must be a list of glob patterns such as ['*bn*']"

# (id, config text, start of the message after "error: ", parts it must hold)
BAD_VALUES: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("val-fraction-1", _yaml(val_fraction=1.0), "data.val_fraction: must be in [0, 1), got 1.0", ()),
    ("val-fraction-negative", _yaml(val_fraction=-0.1), "data.val_fraction: must be in [0, 1), got -0.1", ()),
    ("val-fraction-text", _yaml(val_fraction="x"), "data.val_fraction: expected float, got str 'x'", ()),
    ("test-fraction-1", _yaml(data={**small_config()["data"], "test_fraction": 1.0}),
     "data.test_fraction: must be in [0, 1), got 1.0", ()),
    ("evaluate-server-text", _yaml(evaluate={"server": "yes"}), "evaluate.server: expected bool, got str 'yes'", ()),
    ("evaluate-per-round-0", _evaluate(per_round=0), f"evaluate.clients.per_round: {RANGE}", ()),
    ("evaluate-per-round-above", _evaluate(per_round=5), "evaluate.clients.per_round: must be an int in [1, 4], got 5",
     ("4 clients have validation data",)),
    ("evaluate-per-round-no-validation", _yaml(evaluate={"clients": {"per_round": 2}}),
     "evaluate.clients.per_round: ", ("validation data", "none", "data.val_fraction")),
    ("evaluate-fraction-0", _evaluate(fraction=0), "evaluate.clients.fraction: must be in (0, 1], got 0", ()),
    ("evaluate-fraction-1.5", _evaluate(fraction=1.5), "evaluate.clients.fraction: must be in (0, 1], got 1.5", ()),
    ("evaluate-fraction-no-validation", _yaml(evaluate={"clients": {"fraction": 0.5}}),
     "evaluate.clients.fraction: ", ("validation data", "data.val_fraction")),
    ("evaluate-per-round-and-fraction", _evaluate(per_round=2, fraction=0.5),
     "evaluate.clients: give `per_round` or `fraction`, not both", ()),
    ("evaluate-every-0", _evaluate(per_round=2, every=0), f"evaluate.clients.every: {RANGE}", ()),
    ("evaluate-every-alone", _yaml(evaluate={"clients": {"every": 2}}),
     "evaluate.clients.every: 2 with no clients to evaluate; set `evaluate.clients.per_round`", ()),
    ("aggregation-not-a-path", _evaluate(per_round=2, aggregation="not a path"),
     "evaluate.clients.aggregation: must be an import path `pkg.module:function`, got 'not a path'", ()),
    ("aggregation-missing-module", _evaluate(per_round=2, aggregation="no_such_module:mean"),
     "evaluate.clients.aggregation: cannot import `no_such_module`", ()),
    ("aggregation-missing-function", _evaluate(per_round=2, aggregation="math:no_such_function"),
     "evaluate.clients.aggregation: module `math` has no attribute `no_such_function`", ()),
    ("aggregation-not-a-function", _evaluate(per_round=2, aggregation="math:pi"),
     "evaluate.clients.aggregation: `math:pi` is a float, not a function", ()),
    ("keep-optimizer-state-text", _clients(keep_optimizer_state="yes"),
     "clients.keep_optimizer_state: expected bool, got str 'yes'", ()),
    ("round-timeout-0", _clients(round_timeout=0), "clients.round_timeout: must be in (0, inf), got 0", ()),
    ("round-timeout-negative", _clients(round_timeout=-1), "clients.round_timeout: must be in (0, inf), got -1", ()),
    ("round-timeout-text", _clients(round_timeout="fast"), "clients.round_timeout: expected float", ("'fast'",)),
    ("local-keys-string", _strategy(local_keys="*bn*"), "strategy.args.local_keys: expected a list of str, got str",
     ("'*bn*'",)),
    ("local-keys-int", _strategy(local_keys=[1]), "strategy.args.local_keys: expected a list of str, got list",
     ("[1]",)),
    ("local-keys-match-nothing", _strategy(local_keys=["*bn*"]),
     "strategy.args.local_keys: '*bn*' matches no state-dict name of the model; its names: net.0.weight", ()),
    ("local-keys-everything", _strategy(local_keys=["*"]),
     "strategy.args.local_keys: '*' match every state-dict name of the model", ("nothing would ever be aggregated",)),
    ("local-keys-empty-pattern", _strategy(local_keys=[""]), f"strategy.args.local_keys: {GLOBS}", ("['']",)),
    ("local-keys-fedprox", _yaml(strategy={"type": "fedprox", "args": {"local_keys": "*bn*"}}),
     "strategy.args.local_keys: expected a list of str, got str '*bn*'", ()),
    ("scaffold-eta-g-0", _yaml(strategy={"type": "scaffold", "args": {"eta_g": 0}}),
     "strategy.args.eta_g: must be a number in (0, inf), got 0", ()),
    ("scaffold-weighted-text", _yaml(strategy={"type": "scaffold", "args": {"weighted": "no"}}),
     "strategy.args.weighted: expected bool, got str 'no'", ()),
    ("scaffold-local-keys-match-nothing", _yaml(strategy={"type": "scaffold", "args": {"local_keys": ["*bn*"]}}),
     "strategy.args.local_keys: '*bn*' matches no state-dict name of the model", ()),
    ("fednova-momentum-1", _yaml(strategy={"type": "fednova", "args": {"momentum": 1}}),
     "strategy.args.momentum: must be a number in [0, 1), got 1", ()),
    ("fednova-momentum-text", _yaml(strategy={"type": "fednova", "args": {"momentum": "high"}}),
     "strategy.args.momentum: expected float, got str 'high'", ()),
]


@pytest.mark.parametrize(("config", "expected", "parts"), [c[1:] for c in BAD_VALUES], ids=[c[0] for c in BAD_VALUES])
def test_fed_clients_bad_value_exits_2_with_one_line_at_its_key_and_writes_nothing(
    config: str,
    expected: str,
    parts: tuple[str, ...],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Prepare: the outputs of an earlier run
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(config)
    populate(tmp_path / "out")
    before = snapshot(tmp_path)

    # Execute
    status = main(["--config", "c.yaml"])

    # Assert
    err = capsys.readouterr().err
    assert status == 2, err[:MAX_LINE]
    assert err.count("\n") == 1 and len(err) <= MAX_LINE, err[:MAX_LINE]
    assert err.startswith(f"error: {expected}"), err
    assert all(part in err for part in parts), err
    assert snapshot(tmp_path) == before


def test_fed_lightning_client_callback_by_import_path_keeps_each_clients_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: Lightning's EarlyStopping named by its dotted import path, watching the clients' val_loss
    monkeypatch.chdir(tmp_path)
    early = {"type": "lightning.pytorch.callbacks.EarlyStopping", "args": {"monitor": "val_loss", "patience": 0}}
    config = small_config(rounds=1, client_callbacks=[early])
    config["data"]["val_fraction"] = 0.2
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    # Execute
    status = main(["--config", "c.yaml"])
    # Assert: each client that trained has its own copy's state in the checkpoint
    assert status == 0
    clients = torch.load(tmp_path / "out" / "checkpoints" / "last.ckpt", weights_only=True)["clients"]
    assert len(clients) == 2
    for state in clients.values():
        (key,) = state["lightning_callbacks"]
        assert key.startswith("EarlyStopping{'monitor': 'val_loss'")
