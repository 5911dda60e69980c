"""Digits federations on a real local Flower deployment over TLS: one SuperLink, two SuperNodes, ``flwr run``.

The ServerApp is ``federated.app.flower:server_app`` and each SuperNode runs
``federated.app.flower:client_app``: the same YAML as the CLI, with ``backend: {type: flower}``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

pytest.importorskip("flwr")
pytestmark = pytest.mark.flower

ROUND_HOOKS = ("on_round_start", "on_aggregate_start", "on_aggregate_end", "on_round_end")


def expected_hooks(rounds: range) -> list[tuple[str, int | None]]:
    return [(hook, r) for r in rounds for hook in ROUND_HOOKS]


def assert_same_weights(a: Path, b: Path) -> None:
    left, right = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert list(left) == list(right)
    unequal = [name for name in left if not torch.equal(left[name], right[name])]
    assert not unequal, f"tensors differ from the sequential backend's: {unequal}"


def counters(checkpoint: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Each client's FitCounter state in a federation checkpoint's ``clients`` entry."""
    return {cid: state["callbacks"]["FitCounter"] for cid, state in checkpoint["clients"].items()}


def last_checkpoint(out: Path) -> dict[str, Any]:
    return torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)


def test_flower_federation_runs_on_the_supernodes_as_the_sequential_backend(
    federation: Any, kit: SimpleNamespace, tmp_path: Path
) -> None:
    # Prepare: 2 rounds of SCAFFOLD, whose clients' control variates must stay on their SuperNodes from round
    # 1 to 2; the YAML travels inside the app directory (a relative `config` is looked up there)
    config = {
        **kit.config(tmp_path / "out", tmp_path / "touched"), "rounds": 2, "strategy": {"type": "scaffold"},
    }
    app = kit.write_app(tmp_path / "app", "fed.yaml")
    kit.write_yaml(app / "fed.yaml", config)
    sequential = {**config, "backend": {"type": "sequential", "args": {}}}

    # Execute
    done = federation.run(app)
    reference = kit.run_sequential(sequential, app, tmp_path / "sequential")

    # Assert: over TLS, the server's round loop, hooks in order, in the ServerApp process
    out = tmp_path / "out"
    assert "rounds run: 2 of 2" in done.stdout
    assert "https://" in federation.log("superlink") or "ssl" in federation.log("superlink").lower()
    recorded = kit.hooks(out)
    assert [(h["hook"], h.get("round")) for h in recorded] == [
        ("on_train_start", None), *expected_hooks(range(1, 3)), ("on_train_end", None)
    ]
    assert {h["process"] for h in recorded} == {"flwr-serverapp"}
    assert all(h["clients"] == [0, 1] for h in recorded if h["hook"] == "on_round_end")
    # the client callback ran on the SuperNodes and its state came back to the driver, as it does in-process
    checkpoint, expected = last_checkpoint(out), last_checkpoint(reference)
    assert {cid: c["process"] for cid, c in counters(checkpoint).items()} == {0: "flwr-clientapp", 1: "flwr-clientapp"}
    assert {cid: (c["fits"], c["batches"]) for cid, c in counters(checkpoint).items()} == {
        cid: (c["fits"], c["batches"]) for cid, c in counters(expected).items()
    }
    assert counters(checkpoint)[0]["fits"] == 2
    # the ServerApp never opened the clients' data: it called the data function for its own share alone (its
    # empty node config), each ClientApp for its own client; only the ClientApps read a client's samples
    calls = kit.data_calls(tmp_path / "touched")
    assert {site for program, site in calls if program == "flwr-serverapp"} == {"server"}
    assert {site for program, site in calls if program == "flwr-clientapp"} == {"client0", "client1"}
    assert {program for program, _ in calls} == {"flwr-serverapp", "flwr-clientapp"}
    assert kit.touched_by(tmp_path / "touched") == {("flwr-clientapp", 0), ("flwr-clientapp", 1)}
    # the CLI's outputs, written on the server side, and the sequential backend's weights bit for bit
    assert checkpoint["round"] == 2
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 2
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert (out / "config.yaml").is_file()
    assert_same_weights(out / "final_weights.pt", reference / "final_weights.pt")


@pytest.fixture(scope="module")
def fault_then_resume(federation: Any, kit: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A 4-round federation whose SuperNode 1 is stopped while it trains in round 2 and restarted for round 3,
    and whose ServerApp is killed (SIGKILL) once round 3's checkpoint is written; then ``flwr run`` again with
    ``resume="auto"``.
    Round 4 also evaluates the global model on both clients (federated evaluation on the SuperNodes).
    """
    where = tmp_path_factory.mktemp("fault")
    gates = where / "gates"
    gates.mkdir()
    config = kit.config(where / "out", where / "touched")
    config["rounds"] = 4
    config["data"]["val_fraction"] = 0.1
    config["evaluate"] = {"clients": {"per_round": 2, "every": 4}}
    reference_config = copy.deepcopy(config)
    config["callbacks"] += [
        {"type": "lb_app_parts:Gate", "args": {"folder": str(gates), "rounds": [2, 3]}},
        {"type": "lb_app_parts:KillAfterCheckpoint", "args": {"round": 3}},
    ]
    app = kit.write_app(where / "app", kit.write_yaml(where / "fed.yaml", config))

    first = federation.run_background(app)
    kit.wait_for((gates / "started-2").exists, 240, "round 2", first)
    earlier = set(federation.running("flwr-clientapp", node=1))  # round 1's, if one is still exiting
    (gates / "go-2").touch()
    kit.wait_for(lambda: set(federation.running("flwr-clientapp", node=1)) - earlier, 60, "node 1 training", first)
    old_node = federation.node_ids[1]
    federation.stop_node(1)  # SIGTERM while its ClientApp trains: the node unregisters, its reply never comes
    new_node = federation.start_node(1)  # the same partition id; Flower gives it a new node id
    kit.wait_for((gates / "started-3").exists, 120, "round 3", first)
    (gates / "go-3").touch()

    def killed() -> bool:
        saved = where / "out" / "checkpoints" / "last.ckpt"
        gone = not federation.running("flwr-serverapp")
        return gone and saved.exists() and last_checkpoint(where / "out")["round"] == 3

    kit.wait_for(killed, 120, "the ServerApp killed after round 3")
    hooks_before = kit.hooks(where / "out")
    if first.poll() is None:
        first.terminate()  # the CLI only streams the logs of the killed run
        first.wait(timeout=30)

    resumed = federation.run(app, resume="auto")
    reference = kit.run_sequential(
        {**reference_config, "backend": {"type": "lb_app_parts:SequentialWithout", "args": {"round_num": 2,
                                                                                             "client_id": 1}}},
        app, where / "sequential",
    )
    return SimpleNamespace(
        out=where / "out", reference=reference, resumed=resumed, hooks_before=hooks_before,
        hooks=kit.hooks(where / "out"), nodes=(old_node, new_node),
    )


def test_flower_supernode_down_is_a_client_failure_and_back_after_a_restart(fault_then_resume: Any) -> None:
    run = fault_then_resume
    ends = {h["round"]: h for h in run.hooks_before if h["hook"] == "on_round_end"}
    assert sorted(ends) == [1, 2, 3]
    assert ends[1]["clients"] == [0, 1]
    # round 2: SuperNode 1 went away while training; the SuperLink's error reply is its client's failure, and
    # the round ends with the other client (min_clients=1)
    assert ends[2]["clients"] == [0]
    [(client, error)] = ends[2]["failures"]
    assert client == 1 and "partition-id=1" in error and "Flower error 5" in error, error
    # round 3: the restarted SuperNode (a new node id) answers for partition 1 and trains client 1 again
    assert ends[3]["clients"] == [0, 1]
    assert run.nodes[0] != run.nodes[1]
    states = counters(last_checkpoint(run.out))
    assert (states[0]["fits"], states[1]["fits"]) == (4, 3)


def test_flower_resume_after_the_server_was_killed_ends_with_the_sequential_weights(fault_then_resume: Any) -> None:
    run = fault_then_resume
    assert "resuming after round 3" in run.resumed.stdout
    after = run.hooks[len(run.hooks_before):]
    assert [(h["hook"], h.get("round")) for h in after] == [
        ("on_train_start", None), *expected_hooks(range(4, 5)), ("on_train_end", None)
    ]
    checkpoint, expected = last_checkpoint(run.out), last_checkpoint(run.reference)
    assert checkpoint["round"] == 4
    # federated evaluation ran on the SuperNodes in round 4, with the sequential backend's result
    metrics = checkpoint["last_round"]["metrics"]
    assert metrics["clients/accuracy"] == expected["last_round"]["metrics"]["clients/accuracy"]
    assert {cid: c["batches"] for cid, c in counters(checkpoint).items()} == {
        cid: c["batches"] for cid, c in counters(expected).items()
    }
    # a killed server, resumed, with a client down for a round: the weights of the sequential backend with
    # that client failing in that round
    assert_same_weights(run.out / "final_weights.pt", run.reference / "final_weights.pt")
