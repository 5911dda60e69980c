"""A SuperNode unpickles nothing the server sends: a crafted pickle in any field of a message runs no code.

Each message goes through ``federated.app.flower:client_app``, the call a SuperNode's ClientApp
process makes for every message it receives.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml

pytest.importorskip("flwr")
pytestmark = pytest.mark.flower

from flwr.app import Context, Message, RecordDict  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

from callbacks import dump_yaml  # noqa: E402
from federated.app import flower  # noqa: E402
from federated.backends import flower_messages as messages  # noqa: E402
from federated.backends import flower_records as records  # noqa: E402
from federated.messages import FitTask  # noqa: E402


class Touch:
    """Unpickled with code execution, it creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.path}",)


@pytest.fixture(autouse=True)
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``flwr-serverapp`` sets before a ServerApp builds Messages."""
    for name, value in (("_run_id", 1), ("_node_id", 1), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


def round_record(tmp_path: Path, settings: dict[str, Any], round_num: int) -> Any:
    """The round record a server sends: a FedProx federation of 2 clients."""
    return messages.round_record(round_num=round_num, config=config_text(tmp_path), setup=messages.setup_text(settings))


def fit_task() -> FitTask:
    """Client 1's fit in round 1 (the weights travel in their own record)."""
    return FitTask(client_id=1, round_num=1, seed=0, weights={})


def config_text(tmp_path: Path) -> str:
    config = {
        "seed": 0, "rounds": 1, "output_dir": str(tmp_path / "out"), "threads": 1,
        "data": {"num_clients": 2, "partition": {"type": "iid"}},
        "model": {"args": {"hidden": 8}},
        "strategy": {"type": "fedprox", "args": {"mu": 0.01}},
        "backend": {"type": "flower"},
        "trainer": {"accelerator": "cpu"},
    }
    return dump_yaml(yaml.safe_load(yaml.safe_dump(config)))


def deliver(content: Any, kind: str) -> Any:
    """The reply of this package's ClientApp, on SuperNode 5 (partition-id 1 of 2), to a ``kind`` message."""
    message = Message(content, 5, kind, group_id="1")
    message.metadata.__dict__["_message_id"] = message.object_id
    context = Context(run_id=1, node_id=5, node_config={"partition-id": 1, "num-partitions": 2},
                      state=RecordDict(), run_config={})
    return flower.client_app(message, context)


def test_client_app_refuses_a_query_whose_setup_is_a_pickle(kit: SimpleNamespace, tmp_path: Path) -> None:
    # Prepare: the round record a server would send, its `setup` replaced by a pickle that runs a command
    pwned = tmp_path / "PWNED"
    shared = round_record(tmp_path, kit.runner_settings, 0)
    shared["setup"] = records.to_bytes(Touch(pwned))  # torch.save's pickle, as the setup was once sent

    # Execute
    reply = deliver(messages.query(shared), "query")

    # Assert: nothing ran; the node says why it cannot build its client
    assert not pwned.exists()
    site = messages.read_query_reply(reply.content)
    assert site.partition_id == 1
    assert site.error == "ValueError: `setup` must be JSON text (a SuperNode unpickles nothing it is sent), got bytes"


@pytest.mark.parametrize("field", ["setup", "algorithms", "state", "payload"])
def test_client_app_refuses_a_fit_carrying_a_pickle(kit: SimpleNamespace, tmp_path: Path, field: str) -> None:
    # Prepare: a train message whose `field` is a pickle (written by torch.save) that runs a command
    pwned = tmp_path / "PWNED"
    shared = round_record(tmp_path, kit.runner_settings, 1)
    content = messages.request(records.weights_record({"w": torch.zeros(1)}), shared, fit_task(), state={})
    content["client" if field in ("state", "payload") else "round"][field] = records.to_bytes(Touch(pwned))

    # Execute
    reply = deliver(content, "train")

    # Assert: nothing ran; the client's fit is a failure that names the field
    assert not pwned.exists()
    outcome, state = messages.read_fit_reply(reply.content)
    assert state == {}
    assert outcome.client_id == 1
    assert outcome.error.startswith(f"the SuperNode refused the server's message: ValueError: `{field}` ")


def test_client_app_refuses_algorithms_its_strategy_does_not_build(kit: SimpleNamespace, tmp_path: Path) -> None:
    # Prepare: a round naming a client algorithm the config's FedProx does not run
    shared = round_record(tmp_path, kit.runner_settings, 1)
    shared["algorithms"] = '["os:system"]'
    content = messages.request(records.weights_record({"w": torch.zeros(1)}), shared, fit_task(), state={})

    # Execute
    outcome, _ = messages.read_fit_reply(deliver(content, "train").content)

    # Assert
    assert "the server's strategy runs the client algorithms ['os:system'], but the config's `strategy` builds " \
           "['federated.client.proximal:ProximalTerm'] on this SuperNode" in outcome.error
