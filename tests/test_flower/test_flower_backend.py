"""FlowerBackend's faults and client identity, against a stand-in Grid whose SuperNodes run in this process.

The stand-in answers each message with the package's own ClientApp (``federated.app.flower:client_app``),
or with what a dead or silent node gives: the SuperLink's
``NODE_UNAVAILABLE`` error reply, or nothing. The real processes are in ``test_flower_federation.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml

pytest.importorskip("flwr")
pytestmark = pytest.mark.flower

from flwr.app import Context, Error, Message, RecordDict  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

from callbacks import ArgumentError, ConfigError, dump_yaml  # noqa: E402
from federated import MLP, FederatedTrainer, digits_federation  # noqa: E402
from federated.app import flower, prepare_run  # noqa: E402
from federated.backends import FlowerBackend  # noqa: E402
from federated.backends import flower_messages as messages  # noqa: E402
from federated.backends import flower_records as records  # noqa: E402
from federated.data import digits  # noqa: E402
from federated.messages import FitTask  # noqa: E402


class FakeGrid:
    """A ``Grid``: ``nodes(round)`` gives the node configs by node id connected when that round begins.

    ``faults[(round, node)]`` is ``"dead"`` (the SuperLink's error reply) or ``"silent"`` (no reply).
    """

    def __init__(self, nodes: Callable[[int], dict[int, dict[str, int]]], faults: dict[tuple[int, int], str]) -> None:
        self.nodes = nodes
        self.faults = faults
        self.round = 0  # the latest round a train message was pushed for
        self.sent: list[tuple[str, int, int]] = []  # (message type, round, node)
        self._replies: dict[str, Any] = {}
        self.node_states: dict[int, RecordDict] = {}  # each node's `context.state`, kept across its messages

    def get_node_ids(self) -> list[int]:
        return list(self.nodes(self.round + 1))

    def push_messages(self, sent: list[Any]) -> list[str]:
        ids = []
        for message in sent:
            message.metadata.__dict__["_message_id"] = message.object_id  # as Flower's Grid does
            meta = message.metadata
            round_num = int(meta.group_id or 0)
            if meta.message_type == "train":
                self.round = max(self.round, round_num)
            self.sent.append((meta.message_type, round_num, meta.dst_node_id))
            fault = self.faults.get((round_num, meta.dst_node_id))
            if fault == "dead":
                self._replies[meta.message_id] = Message(Error(code=5, reason="Node Unavailable"), reply_to=message)
            elif fault is None:
                config = self.nodes(round_num or self.round + 1)[meta.dst_node_id]
                state = self.node_states.setdefault(meta.dst_node_id, RecordDict())
                context = Context(run_id=1, node_id=meta.dst_node_id, node_config=config, state=state, run_config={})
                self._replies[meta.message_id] = flower.client_app(message, context)  # routed by message type
            ids.append(meta.message_id)
        return ids

    def pull_messages(self, ids: list[str]) -> list[Any]:
        return [self._replies.pop(i) for i in list(ids) if i in self._replies]


@pytest.fixture(autouse=True)
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``flwr-serverapp`` sets before a ServerApp builds Messages."""
    for name, value in (("_run_id", 1), ("_node_id", 1), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


def write_config(tmp_path: Path, **changes: Any) -> Path:
    config = {
        "seed": 0, "rounds": 4, "output_dir": str(tmp_path / "out"), "threads": 1,
        "data": {"num_clients": 2, "partition": {"type": "iid"}},
        "model": {"args": {"hidden": 8, "lr": 0.1}},
        "clients": {"min_clients": 1},
        "backend": {"type": "flower", "args": {"timeout": 1.0, "discovery_timeout": 1.0, "poll_interval": 0.05}},
        "trainer": {"accelerator": "cpu"},
        "client_callbacks": [{"type": "test_flower_backend_parts:FitCounter"}],
        **changes,
    }
    path = tmp_path / "fed.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def node(partition: int, count: int = 2) -> dict[str, int]:
    return {"partition-id": partition, "num-partitions": count}


def history(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "checkpoints" / "history.jsonl").read_text().splitlines()]


def test_flower_backend_node_faults_are_client_failures_and_a_new_node_takes_its_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: node 22 (partition 1) is dead in round 1 and gone in round 2; node 33 takes partition 1 from
    # round 3; node 11 (partition 0) does not answer in round 4 (the backend waits 1 s)
    (tmp_path / "test_flower_backend_parts.py").write_text(PARTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    grid = FakeGrid(
        lambda r: {11: node(0), 22: node(1)} if r == 1 else {11: node(0)} if r == 2 else {11: node(0), 33: node(1)},
        {(1, 22): "dead", (4, 11): "silent"},
    )

    # Execute
    flower.serve(grid, SimpleNamespace(run_config={"config": str(write_config(tmp_path))}))

    # Assert
    rounds = history(tmp_path / "out")
    trained = [[u["client_id"] for u in r["updates"]] for r in rounds]
    failed = {r["round_num"]: [(f["client_id"], f["error"]) for f in r["failures"]] for r in rounds}
    assert trained == [[0], [0], [0, 1], [1]]
    assert "replied with Flower error 5: Node Unavailable" in failed[1][0][1]
    assert failed[2][0][0] == 1 and "no SuperNode with partition-id=1 is connected" in failed[2][0][1]
    assert failed[3] == []
    assert failed[4][0][0] == 0 and "within the backend's timeout=1 s" in failed[4][0][1]
    # each node is asked who it is once, when it appears; partition 1's fits go to the node that has it
    assert [n for kind, _, n in grid.sent if kind == "query"] == [11, 22, 33]
    assert [(r, n) for kind, r, n in grid.sent if kind == "train" and n != 11] == [(1, 22), (3, 33), (4, 33)]
    # the client state came back from the fits that returned, and only from those
    saved = torch.load(tmp_path / "out" / "checkpoints" / "last.ckpt", weights_only=True)
    assert {c: s["callbacks"]["FitCounter"]["fits"] for c, s in saved["clients"].items()} == {0: 3, 1: 2}


def test_flower_clients_hold_their_data_report_its_size_and_evaluate_on_their_nodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: 2 nodes, each holding out 20 % of its client's samples; both clients evaluate every round
    (tmp_path / "test_flower_backend_parts.py").write_text(PARTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    grid = FakeGrid(lambda r: {11: node(0), 22: node(1)}, {})
    data = {"num_clients": 2, "partition": {"type": "iid"}, "val_fraction": 0.2}
    config = write_config(tmp_path, rounds=2, data=data, evaluate={"server": False, "clients": {"per_round": 2}})
    run = prepare_run(str(config))
    run.trainer.backend.attach(grid, config=dump_yaml(run.config))

    # Execute
    run.execute()

    # Assert: the server holds no client data; each client's sizes are what its node reported
    whole = digits(num_clients=2, partition="iid", val_fraction=0.2, seed=0)
    clients = run.trainer.clients
    assert all(c.data is None and c.val_data is None for c in clients)
    assert [(c.num_samples, c.num_val_samples) for c in clients] == [
        (len(train.dataset), len(val.dataset)) for train, val in whole.client_loaders
    ]
    # federated evaluation ran on the nodes, on each client's own validation samples
    rounds = history(tmp_path / "out")
    assert [[(e["client_id"], e["num_samples"]) for e in r["evaluations"]] for r in rounds] == [
        [(c.client_id, c.num_val_samples) for c in clients]
    ] * 2
    assert 0.0 < rounds[-1]["metrics"]["clients/accuracy"] <= 1.0


def test_flower_backend_reports_two_supernodes_claiming_one_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: nodes 22 and 33 both start with partition-id=1
    (tmp_path / "test_flower_backend_parts.py").write_text(PARTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    grid = FakeGrid(lambda r: {11: node(0), 22: node(1), 33: node(1)}, {})

    # Execute
    flower.serve(grid, SimpleNamespace(run_config={"config": str(write_config(tmp_path, rounds=1))}))

    # Assert: client 1's fit is a recorded failure naming both nodes; neither node was sent it
    [round_1] = history(tmp_path / "out")
    assert [u["client_id"] for u in round_1["updates"]] == [0]
    assert [(f["client_id"], f["error"].split(", and")[0]) for f in round_1["failures"]] == [
        (1, "SuperNodes 22 and 33 all claim partition-id=1")
    ]
    assert [n for kind, _, n in grid.sent if kind == "train"] == [11]


def test_flower_backend_refuses_federated_evaluation_without_validation_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: federated evaluation asked for, and no client holds validation samples
    (tmp_path / "test_flower_backend_parts.py").write_text(PARTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    grid = FakeGrid(lambda r: {11: node(0), 22: node(1)}, {})
    config = write_config(tmp_path, evaluate={"server": False, "clients": {"per_round": 2}})

    # Execute / Assert: refused as the sequential backend refuses it, before any client trains
    with pytest.raises(ArgumentError, match=r"^`evaluate_clients`: needs clients with validation data, and none of "
                                            r"the 2 SuperNodes' clients has any: hold some out"):
        flower.serve(grid, SimpleNamespace(run_config={"config": str(config)}))
    assert [kind for kind, _, _ in grid.sent] == ["query", "query"]


def test_flower_backend_takes_the_number_of_clients_not_their_data() -> None:
    loaders, _ = digits_federation(num_clients=2, partition="iid", seed=0)
    with pytest.raises(ArgumentError, match=r"^`client_data`: must be the number of clients \(an int\), got list: "
                                            r"this backend's clients build their data on their own machines"):
        FederatedTrainer(MLP(hidden=8), loaders, backend=FlowerBackend())


def test_client_app_refuses_a_node_config_that_does_not_fit(kit: SimpleNamespace, tmp_path: Path) -> None:
    # Prepare
    config = dump_yaml({**yaml.safe_load(write_config(tmp_path).read_text()), "client_callbacks": []})
    shared = messages.round_record(round_num=1, config=config, setup=messages.setup_text(kit.runner_settings))
    weights = records.weights_record({"w": torch.zeros(1)})
    content = messages.request(weights, shared, FitTask(client_id=1, round_num=1, seed=0, weights={}), state={})
    query, fit = Message(messages.query(shared), 5, "query"), Message(content, 5, "train")
    for message in (query, fit):
        message.metadata.__dict__["_message_id"] = message.object_id

    # Execute / Assert: no partition-id at all
    with pytest.raises(ConfigError, match=r"partition-id: missing in this SuperNode's --node-config"):
        flower.answer_query(query, SimpleNamespace(node_config={}))
    # a node config for another number of clients: the query's reply says what to fix, and the client fails with it
    site = messages.read_query_reply(flower.answer_query(query, SimpleNamespace(node_config=node(1, count=3))).content)
    assert (site.partition_id, site.num_samples) == (1, 0)
    assert "num-partitions: 3 in this SuperNode's --node-config, but the federation has data.num_clients=2" in (
        site.error
    )
    reply = flower.train(fit, SimpleNamespace(node_config=node(1, count=3)))
    outcome, state = messages.read_fit_reply(reply.content)
    assert state == {}
    assert outcome.client_id == 1
    assert "num-partitions: 3 in this SuperNode's --node-config, but the federation has data.num_clients=2" in (
        outcome.error
    )


PARTS = '''
from callbacks import Callback


class FitCounter(Callback):
    def __init__(self):
        self.fits = 0

    def state_dict(self):
        return {"fits": self.fits}

    def load_state_dict(self, state_dict):
        self.fits = state_dict["fits"]

    def on_train_start(self):
        self.fits += 1
'''


def run_on_flower_and_sequential(tmp_path: Path, changes: dict[str, Any]) -> tuple[FakeGrid, Any, Any]:
    """The config with ``changes`` served on two fake nodes and run sequentially: the grid, both last.ckpt."""
    for run in ("flower", "sequential"):
        (tmp_path / run).mkdir()
    flower_config = write_config(tmp_path / "flower", **changes)
    sequential_config = write_config(tmp_path / "sequential", **changes, backend={"type": "sequential"})
    grid = FakeGrid(lambda r: {11: node(0), 22: node(1)}, {})
    flower.serve(grid, SimpleNamespace(run_config={"config": str(flower_config)}))
    prepare_run(str(sequential_config)).execute()
    flower_ckpt, sequential_ckpt = (
        torch.load(tmp_path / run / "out" / "checkpoints" / "last.ckpt", weights_only=True)
        for run in ("flower", "sequential")
    )
    return grid, flower_ckpt, sequential_ckpt


@pytest.mark.parametrize(
    "algorithm",
    [
        {"strategy": {"type": "scaffold", "args": {"eta_g": 0.9}}},
        {"clients": {"min_clients": 1, "dp_sgd": {"noise_multiplier": 1.0, "max_grad_norm": 1.0}}},
    ],
    ids=["scaffold", "dp_sgd"],
)
def test_flower_backend_runs_client_algorithms_as_the_sequential_backend(
    tmp_path: Path, algorithm: dict[str, Any]
) -> None:
    # Prepare: SCAFFOLD's server variate goes down in each task's payload, the change comes back up; each
    # client's own variate (DP-SGD's: its privacy account) stays on its SuperNode
    changes = {"rounds": 3, "client_callbacks": [], **algorithm}

    # Execute
    grid, flower_ckpt, sequential_ckpt = run_on_flower_and_sequential(tmp_path, changes)

    # Assert: the same weights and strategy state, bit for bit; the clients' kept states on their nodes
    assert [len(r["updates"]) for r in history(tmp_path / "flower" / "out")] == [2, 2, 2]
    for key in ("weights", "strategy"):
        torch.testing.assert_close(flower_ckpt[key], sequential_ckpt[key], rtol=0, atol=0)
    assert all("algorithms" not in state for state in flower_ckpt["clients"].values())
    for client_id, node_id in ((0, 11), (1, 22)):
        kept = records.node_algorithm_states(grid.node_states[node_id], client_id)
        expected = sequential_ckpt["clients"][client_id]["algorithms"]
        torch.testing.assert_close(kept, expected, rtol=0, atol=0)


def test_flower_backend_runs_client_side_dp_clipping_as_the_sequential_backend(tmp_path: Path) -> None:
    # Prepare: the clients clip on their SuperNodes (the norm comes down in each task); the server noises
    changes = {
        "rounds": 2, "client_callbacks": [], "strategy": {"type": "fedavg", "args": {"weighted": False}},
        "privacy": {"type": "client_adaptive_clipping", "args": {"noise_multiplier": 0.5, "clipped_count_stddev": 1.0},
                    "delta": 1e-3},
    }

    # Execute
    _, flower_ckpt, sequential_ckpt = run_on_flower_and_sequential(tmp_path, changes)

    # Assert: the same weights, clipping norm and account, bit for bit
    for key in ("weights", "strategy"):
        torch.testing.assert_close(flower_ckpt[key], sequential_ckpt[key], rtol=0, atol=0)
    assert flower_ckpt["strategy"]["account"]["rounds"] == 2
    assert flower_ckpt["strategy"]["clipping_norm"] != 0.1  # the norm adapted
