"""Data built per site: a data function given a node config builds that site's share alone, and a federation
built from the number of its clients holds no client data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from callbacks import ArgumentError, ConfigError
from federated import MLP, FederatedTrainer
from federated.app.builders import build_data
from federated.data import breast_cancer, digits, site_of

SITE_DATA = '''
import torch
from torch.utils.data import DataLoader, TensorDataset


def samples(n):
    return TensorDataset(torch.randn(n, 4), torch.randint(0, 2, (n,)))


def site(batch_size, num_clients, node_config):
    """The whole federation without a node config; a SuperNode's client alone; nothing on the server."""
    if node_config is None:
        return [DataLoader(samples(10 + i), batch_size=batch_size) for i in range(num_clients)], None
    if "partition-id" not in node_config:
        return None
    n = 10 + node_config["partition-id"]
    return DataLoader(samples(n), batch_size=batch_size), DataLoader(samples(3), batch_size=batch_size)


def every_client(num_clients, node_config):
    return [DataLoader(samples(10)) for _ in range(num_clients)], None


def no_node_config(num_clients):
    return [DataLoader(samples(10)) for _ in range(num_clients)], None
'''


def node(partition: int, count: int = 3) -> dict[str, int]:
    return {"partition-id": partition, "num-partitions": count}


def section(kind: str, **args: Any) -> dict[str, Any]:
    """A checked ``data`` section of 3 IID clients."""
    return {
        "type": kind, "args": args, "num_clients": 3, "batch_size": 8, "test_fraction": 0.2, "val_fraction": 0.0,
        "partition": {"type": "iid", "alpha": 0.5, "shards_per_client": 2},
    }


@pytest.fixture
def site_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "site_data.py").write_text(SITE_DATA)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "site_data"


def tensors(loader: Any) -> tuple[torch.Tensor, ...]:
    return loader.dataset.tensors


def test_site_of_tells_the_whole_federation_a_client_and_the_server_apart() -> None:
    assert site_of(None, 3) is None
    assert site_of(node(2), 3) == 2
    assert site_of({}, 3) == "server"
    assert site_of({"region": "eu"}, 3) == "server"
    with pytest.raises(ArgumentError, match=r"`node_config`: `partition-id` must be an int in \[0, 2\] "
                                            r"\(num_clients=3\), got 3"):
        site_of(node(3), 3)


@pytest.mark.parametrize("data_set", [digits, breast_cancer])
def test_a_built_in_data_set_builds_one_sites_share_alone(data_set: Any) -> None:
    # Prepare
    kwargs: dict[str, Any] = {"num_clients": 3, "partition": "dirichlet", "seed": 4, "val_fraction": 0.2}

    # Execute
    whole = data_set(**kwargs)
    sites = [data_set(**kwargs, node_config=node(i)) for i in range(3)]
    server = data_set(**kwargs, node_config={})

    # Assert: each SuperNode's share is its client of the whole federation, sample for sample, without the
    # server's test data; the server's share is the test data and the shapes, no client's samples
    for i, share in enumerate(sites):
        [(train, val)] = share.client_loaders
        assert all(torch.equal(a, b) for a, b in zip(tensors(train), tensors(whole.client_loaders[i][0]), strict=True))
        assert all(torch.equal(a, b) for a, b in zip(tensors(val), tensors(whole.client_loaders[i][1]), strict=True))
        assert share.test_loader is None
        assert (share.in_features, share.num_classes) == (whole.in_features, whole.num_classes)
    assert server.client_loaders == []
    assert server.test_loader is not None and whole.test_loader is not None
    assert all(torch.equal(a, b) for a, b in zip(tensors(server.test_loader), tensors(whole.test_loader), strict=True))
    assert (server.in_features, server.num_classes) == (whole.in_features, whole.num_classes)


def test_build_data_passes_the_node_config_to_a_users_data_function(site_module: str) -> None:
    # Execute
    whole = build_data(section(f"{site_module}:site"), 0)
    one = build_data(section(f"{site_module}:site"), 0, node_config=node(2))
    server = build_data(section(f"{site_module}:site"), 0, node_config={})

    # Assert: a bare (train, val) entry is the node's one client; None is a server holding nothing
    assert [len(loader.dataset) for loader in whole.client_loaders] == [10, 11, 12]
    [(train, val)] = one.client_loaders
    assert (len(train.dataset), len(val.dataset)) == (12, 3)
    assert (server.client_loaders, server.test_loader) == ([], None)


def test_build_data_refuses_a_site_share_of_the_wrong_size(site_module: str) -> None:
    with pytest.raises(ConfigError) as raised:
        build_data(section(f"{site_module}:every_client"), 0, node_config=node(1))
    assert str(raised.value) == (
        f"data.type: the data function `{site_module}:every_client` gave 3 clients for the SuperNode of "
        "partition-id=1; given a node config, it returns that client's data alone (see federated.data.site_of)"
    )
    with pytest.raises(ConfigError, match=r"^data.type: .* gave 3 clients for the server \(an empty node config\); "
                                          r"given a node config, it returns no client's data"):
        build_data(section(f"{site_module}:every_client"), 0, node_config={})


def test_build_data_under_flower_refuses_a_function_without_node_config(site_module: str) -> None:
    with pytest.raises(ConfigError) as raised:
        build_data(section(f"{site_module}:no_node_config"), 0, node_config={})
    message = str(raised.value)
    assert message.startswith(f"data.type: the data function `{site_module}:no_node_config` takes no `node_config`")
    assert "give it a `node_config` argument" in message and "\n" not in message
    # without a node config (the sequential and Ray backends) the same function is fine
    assert len(build_data(section(f"{site_module}:no_node_config"), 0).client_loaders) == 3


def test_node_config_in_data_args_is_refused(site_module: str) -> None:
    with pytest.raises(ConfigError, match=r"^data.args.node_config: is the node config of the machine that builds "
                                          r"the data; Flower sets it"):
        build_data(section(f"{site_module}:site", node_config={"partition-id": 0}), 0)


def test_a_number_of_clients_needs_a_backend_whose_clients_hold_their_data() -> None:
    with pytest.raises(ArgumentError) as raised:
        FederatedTrainer(MLP(hidden=8), 3, rounds=1)
    assert str(raised.value) == (
        "`client_data`: 3 is a number of clients, which only a backend whose clients hold their own data takes "
        "(backend 'flower'); give this one an entry per client: a DataLoader, a Dataset, a (train, val) pair of "
        "them, or a LightningDataModule (lightning.pytorch's or pytorch_lightning's, such as Opacus's "
        "DPLightningDataModule)"
    )
