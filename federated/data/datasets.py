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

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from callbacks import register
from callbacks.arguments import check_number
from federated.data import partitions
from federated.data.partitions import Partition, client_datasets

__all__ = [
    "FederatedData",
    "as_federated_data",
    "breast_cancer",
    "digits",
    "digits_federation",
    "from_arrays",
    "labelled_datasets",
    "load_digits_data",
    "standardise",
]


def load_digits_data(test_fraction: float = 0.2, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn's 8x8 digits (1797 images, 10 classes) as train and test ``TensorDataset``.

    Features are the 64 pixel intensities standardised with the training split's statistics
    (:func:`standardise`; ``float32``), labels ``int64``. The split is stratified and seeded.

    Args:
        test_fraction: The share of samples held out for the server's evaluation. Defaults to ``0.2``.
        seed: The seed of the split. Defaults to ``0``.

    Raises:
        ValueError: ``test_fraction`` is not in (0, 1).
    """
    check_number("test_fraction", test_fraction, low=0, high=1, low_open=True, high_open=True)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return labelled_datasets(*standardise(x_train, x_test), y_train, y_test)


def standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale each feature to zero mean and unit variance with the statistics of the training split.

    The test split is scaled with the same statistics, so nothing about it leaks into training.
    A feature constant on the training split (the digits' border pixels) is only centred.

    Example:
        >>> train, test = standardise(np.array([[0.0, 5.0], [2.0, 5.0]]), np.array([[4.0, 6.0]]))
        >>> train.tolist(), test.tolist()
        ([[-1.0, 0.0], [1.0, 0.0]], [[3.0, 1.0]])
    """
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0
    return (x_train - mean) / std, (x_test - mean) / std


def labelled_datasets(
    x_train: np.ndarray, x_test: np.ndarray, y_train: np.ndarray, y_test: np.ndarray
) -> tuple[TensorDataset, TensorDataset]:
    """Train and test ``TensorDataset`` of ``float32`` features and ``int64`` labels."""

    def to_dataset(features: np.ndarray, labels: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.as_tensor(features, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.int64))

    return to_dataset(x_train, y_train), to_dataset(x_test, y_test)


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
    parts = partitions.partition(
        labels, num_clients, partition_type, alpha=alpha, shards_per_client=shards_per_client, seed=seed
    )
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
    """scikit-learn's 8x8 digits (1797 images, 64 standardised features, 10 classes) across ``num_clients``."""
    train, test = load_digits_data(test_fraction=test_fraction, seed=seed)
    return from_arrays(
        train, test, num_clients=num_clients, partition_type=partition, alpha=alpha,
        shards_per_client=shards_per_client, batch_size=batch_size, seed=seed,
    )


def digits_federation(
    num_clients: int = 10,
    partition: Partition = "dirichlet",
    *,
    alpha: float = 0.5,
    shards_per_client: int = 2,
    batch_size: int = 32,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[list[DataLoader], DataLoader]:
    """Digits split over ``num_clients`` clients: one shuffling ``DataLoader`` each, and the test loader.

    Args:
        num_clients: How many clients. Defaults to ``10``.
        partition: ``"iid"``, ``"dirichlet"`` or ``"shards"``. Defaults to ``"dirichlet"``.
        alpha: Dirichlet concentration. Defaults to ``0.5``.
        shards_per_client: Shards per client for ``"shards"``. Defaults to ``2``.
        batch_size: Batch size of the client loaders (the test loader uses 256). Defaults to ``32``.
        test_fraction: Held-out share for the server's evaluation. Defaults to ``0.2``.
        seed: Seed of the split and the partition. Defaults to ``0``.
    """
    data = digits(num_clients, partition, alpha, shards_per_client, batch_size, test_fraction, seed)
    return data.client_loaders, data.test_loader




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
