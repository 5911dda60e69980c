"""Built-in federated data sets that ship with scikit-learn, registered for the YAML ``data.type``.

A data set is a function that takes (any of) ``num_clients``, ``partition``, ``alpha``,
``shards_per_client``, ``batch_size``, ``test_fraction``, ``seed`` and its own ``data.args``, and
returns a :class:`FederatedData`. A user's own function, named in YAML as ``pkg.module:function``,
gets the same keywords it names and may return a ``FederatedData`` or a
``(client_loaders, test_loader)`` pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from callbacks import register
from federated.data import Partition, client_datasets, digits_federation, labelled_datasets, partition, standardise

__all__ = ["FederatedData", "breast_cancer", "digits", "from_arrays"]


@dataclass
class FederatedData:
    """Client loaders (client id = index), the server's test loader, and the shapes a model needs.

    Example:
        >>> data = digits(num_clients=3, partition="iid")
        >>> len(data.client_loaders), data.in_features, data.num_classes
        (3, 64, 10)
    """

    client_loaders: list[DataLoader]
    test_loader: DataLoader
    in_features: int | None = None
    num_classes: int | None = None


def from_arrays(
    train: TensorDataset,
    test: TensorDataset,
    *,
    num_clients: int,
    partition_type: Partition,
    alpha: float,
    shards_per_client: int,
    batch_size: int,
    seed: int,
) -> FederatedData:
    """Partition ``train`` over the clients and wrap everything in loaders."""
    labels = train.tensors[1]
    parts = partition(labels, num_clients, partition_type, alpha=alpha, shards_per_client=shards_per_client, seed=seed)
    loaders = [DataLoader(ds, batch_size=batch_size, shuffle=True) for ds in client_datasets(train, parts)]
    return FederatedData(
        client_loaders=loaders,
        test_loader=DataLoader(test, batch_size=256),
        in_features=int(train.tensors[0].shape[1]),
        num_classes=int(torch.cat([labels, test.tensors[1]]).max()) + 1,
    )


@register("data.digits")
def digits(
    num_clients: int = 10,
    partition: Partition = "dirichlet",
    alpha: float = 0.5,
    shards_per_client: int = 2,
    batch_size: int = 32,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> FederatedData:
    """scikit-learn's 8x8 digits (1797 images, 64 features, 10 classes) across ``num_clients``."""
    loaders, test = digits_federation(
        num_clients, partition, alpha=alpha, shards_per_client=shards_per_client, batch_size=batch_size,
        test_fraction=test_fraction, seed=seed,
    )
    return FederatedData(client_loaders=loaders, test_loader=test, in_features=64, num_classes=10)


@register("data.breast_cancer")
def breast_cancer(
    num_clients: int = 10,
    partition: Partition = "dirichlet",
    alpha: float = 0.5,
    shards_per_client: int = 2,
    batch_size: int = 32,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> FederatedData:
    """scikit-learn's breast cancer set (569 samples, 30 standardised features, 2 classes)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    train, test = labelled_datasets(*standardise(x_train, x_test), y_train, y_test)
    return from_arrays(
        train, test, num_clients=num_clients, partition_type=partition,
        alpha=alpha, shards_per_client=shards_per_client, batch_size=batch_size, seed=seed,
    )


def as_federated_data(value: Any) -> FederatedData:
    """Accept a ``FederatedData`` or a ``(client_loaders, test_loader)`` pair from a data function."""
    if isinstance(value, FederatedData):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return FederatedData(client_loaders=list(value[0]), test_loader=value[1])
    raise TypeError(
        f"a data function must return FederatedData or (client_loaders, test_loader), got {type(value).__name__}"
    )
