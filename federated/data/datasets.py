"""Built-in federated data sets that ship with scikit-learn, registered for the YAML ``data.type``.

A data set is a function that takes (any of) ``num_clients``, ``partition``, ``alpha``,
``shards_per_client``, ``batch_size``, ``test_fraction``, ``seed`` and its own ``data.args``, and
returns a :class:`FederatedData`. The built-ins also take ``val_fraction`` (``data.val_fraction``), the
share of each client's own samples held out as its validation data, and ``feature_skew``, the strength
of each client's own affine distortion of its features. A user's own function, named in YAML as
``pkg.module:function``, gets the same keywords it names and may return a ``FederatedData`` or a
``(client_loaders, test_loader)`` pair.

A data function that takes ``node_config`` can build one site's share alone, as a federation on
Flower's SuperNodes needs (see :func:`site_of`): ``None`` asks for the whole federation, a SuperNode's
``--node-config`` (with ``partition-id``) for that client's data alone, and the server's node config
(Flower leaves it empty) for what the server holds: its test data, no client's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from callbacks import ArgumentError, register
from callbacks.arguments import check_number, echo
from federated.data import partitions
from federated.data.partitions import Partition, client_datasets, skew_features, validation_split
from federated.rules import HELD_OUT
from federated.seeding import check_seed

__all__ = [
    "FederatedData",
    "as_federated_data",
    "breast_cancer",
    "digits",
    "digits_federation",
    "from_arrays",
    "labelled_datasets",
    "load_digits_data",
    "site_of",
    "standardise",
]

NodeConfig = Mapping[str, object] | None
"""A data function's ``node_config``: ``None`` (the whole federation), or the node config of the caller."""


def load_digits_data(test_fraction: float = 0.2, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn's 8x8 digits (1797 images, 10 classes) as train and test ``TensorDataset``.

    Features are the 64 pixel intensities standardised with the training split's statistics
    (:func:`standardise`; ``float32``), labels ``int64``. The split is stratified and seeded.

    Args:
        test_fraction: The share of samples held out for the server's evaluation, in [0, 1); with
            ``0`` the test set is empty and every sample is in the training set. Defaults to ``0.2``.
        seed: The seed of the split. Defaults to ``0``.

    Raises:
        ArgumentError: ``test_fraction`` is not in [0, 1).
    """
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return _train_test(x, y, test_fraction, seed)


def _train_test(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> tuple[TensorDataset, TensorDataset]:
    """The stratified, seeded train and test split of ``(x, y)``, standardised (an empty test set at ``0``)."""
    HELD_OUT.check("test_fraction", test_fraction)
    check_seed(seed)  # scikit-learn's `random_state` takes 32 bits: a wider seed is named here, not inside it
    if test_fraction == 0:
        x_train, x_test, y_train, y_test = x, x[:0], y, y[:0]
    else:
        from sklearn.model_selection import train_test_split

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

    Attributes:
        client_loaders: Per client, its shuffling training ``DataLoader``, or a ``(train_loader,
            val_loader)`` pair when it holds out validation data of its own (``val_fraction > 0``).
        test_loader: The server's test loader, or ``None`` when there is no test split
            (``test_fraction=0``).
        in_features: The number of input features, when known. Defaults to ``None``.
        num_classes: The number of classes, when known. Defaults to ``None``.

    Example:
        >>> data = digits(num_clients=3, partition="iid")
        >>> len(data.client_loaders), data.in_features, data.num_classes
        (3, 64, 10)
    """

    client_loaders: list[DataLoader | tuple[DataLoader, DataLoader]]
    test_loader: DataLoader | None
    in_features: int | None = None
    num_classes: int | None = None


def from_arrays(
    train: TensorDataset,
    test: TensorDataset | None,
    *,
    num_clients: int,
    partition_type: Partition,
    alpha: float,
    shards_per_client: int,
    batch_size: int,
    seed: int,
    val_fraction: float = 0.0,
    feature_skew: float = 0.0,
    node_config: NodeConfig = None,
) -> FederatedData:
    """Partition ``train`` over the clients, hold out each client's validation share, skew each client's
    features, and wrap everything in loaders (or, for one site, its share: see ``node_config``).

    Args:
        train: The samples the clients share out (features, ``int64`` labels).
        test: The server's test samples; ``None`` or empty for no test loader.
        num_clients: How many clients.
        partition_type: ``"iid"``, ``"dirichlet"`` or ``"shards"``.
        alpha: Dirichlet concentration.
        shards_per_client: Shards per client for ``"shards"``.
        batch_size: Batch size of the client loaders, training and validation (the test loader uses 256).
        seed: Seed of the partition, of the clients' validation splits and of their feature skews.
        val_fraction: The share of each client's own samples held out as its validation data, in
            [0, 1), by :func:`~federated.data.validation_split`'s rule (a client of one sample holds
            out none). A client with validation data gets a ``(train_loader, val_loader)`` pair, the
            validation loader not shuffling; the others a plain training loader, as with ``0``.
            Defaults to ``0.0``.
        feature_skew: The strength of each client's own affine distortion of its features, training
            and validation samples alike, in [0, inf) (:func:`~federated.data.skew_features`, seeded
            from ``seed`` and the client id); the test samples are left as they are, and ``0`` leaves
            every client's samples as they are. Defaults to ``0.0``.
        node_config: ``None`` builds every client; a SuperNode's node config builds only the client
            its ``partition-id`` names (the same seeded split, so the same samples), without the
            test loader; the server's (no ``partition-id``) builds only the test loader
            (:func:`site_of`). Defaults to ``None``.

    Raises:
        ArgumentError: ``val_fraction`` is not in [0, 1), ``feature_skew`` not in [0, inf), a
            partition argument is out of range, or ``node_config`` names no client of ``num_clients``.
    """
    check_number("feature_skew", feature_skew, low=0)
    site = site_of(node_config, num_clients)
    labels = train.tensors[1]
    all_labels = labels if test is None else torch.cat([labels, test.tensors[1]])
    data = FederatedData(
        client_loaders=[],
        test_loader=DataLoader(test, batch_size=256) if test and site in (None, "server") else None,
        in_features=int(train.tensors[0].shape[1]),
        num_classes=int(all_labels.max()) + 1,
    )
    if site == "server":
        return data
    parts = partitions.partition(
        labels, num_clients, partition_type, alpha=alpha, shards_per_client=shards_per_client, seed=seed
    )
    splits = validation_split(labels, parts, val_fraction, seed=seed)
    data.client_loaders = [
        _client_loaders(train, fit, val, batch_size, feature_skew, client_id=client_id, seed=seed)
        for client_id, (fit, val) in enumerate(splits)
        if site is None or client_id == site
    ]
    return data


def site_of(node_config: NodeConfig, num_clients: int) -> int | str | None:
    """Whose share of the data a data function is asked for, from its ``node_config``.

    ``None``: the whole federation (``None`` returned). A node config with ``partition-id``, as a
    SuperNode's ``--node-config`` has: that client's alone (its id returned). Any other node config,
    such as the empty one Flower gives the ServerApp: the server's share (``"server"`` returned).

    Raises:
        ArgumentError: ``partition-id`` is not an int in ``[0, num_clients)``.

    Example:
        >>> site_of(None, 4), site_of({"partition-id": 2, "num-partitions": 4}, 4), site_of({}, 4)
        (None, 2, 'server')
    """
    if node_config is None:
        return None
    if "partition-id" not in node_config:
        return "server"
    partition = node_config["partition-id"]
    if isinstance(partition, bool) or not isinstance(partition, int) or not 0 <= partition < num_clients:
        problem = f"`partition-id` must be an int in [0, {num_clients - 1}] (num_clients={num_clients}), got"
        raise ArgumentError("node_config", f"{problem} {echo(partition)}")
    return partition


def _client_loaders(
    train: TensorDataset,
    fit: list[int],
    val: list[int],
    batch_size: int,
    feature_skew: float,
    *,
    client_id: int,
    seed: int,
) -> DataLoader | tuple[DataLoader, DataLoader]:
    """A client's shuffling training loader, paired with its validation loader when it holds out samples."""
    fit_set, *val_set = (
        _skewed(dataset, feature_skew, client_id=client_id, seed=seed)
        for dataset in client_datasets(train, [fit, val] if val else [fit])
    )
    loader = DataLoader(fit_set, batch_size=batch_size, shuffle=True)
    if not val_set:
        return loader
    return loader, DataLoader(val_set[0], batch_size=batch_size, shuffle=False)


def _skewed(dataset: TensorDataset, feature_skew: float, *, client_id: int, seed: int) -> TensorDataset:
    """``dataset`` with the client's feature skew applied to its features (the first tensor)."""
    if feature_skew == 0:
        return dataset
    features, *rest = dataset.tensors
    return TensorDataset(skew_features(features, feature_skew, client_id=client_id, seed=seed), *rest)


@register("data.digits")
def digits(
    num_clients: int = 10,
    partition: Partition = "dirichlet",
    alpha: float = 0.5,
    shards_per_client: int = 2,
    batch_size: int = 32,
    test_fraction: float = 0.2,
    seed: int = 0,
    val_fraction: float = 0.0,
    feature_skew: float = 0.0,
    node_config: NodeConfig = None,
) -> FederatedData:
    """scikit-learn's 8x8 digits (1797 images, 64 standardised features, 10 classes) across ``num_clients``.

    The arguments are :func:`digits_federation`'s, and ``node_config`` is :func:`from_arrays`'. The
    standardisation statistics are those of the whole training split, the clients' validation samples
    included (the test split is held out before); the feature skew distorts the standardised features.
    Every machine reads the same file of scikit-learn's and splits it the same seeded way.
    """
    train, test = load_digits_data(test_fraction=test_fraction, seed=seed)
    return from_arrays(
        train,
        test,
        num_clients=num_clients,
        partition_type=partition,
        alpha=alpha,
        shards_per_client=shards_per_client,
        batch_size=batch_size,
        seed=seed,
        val_fraction=val_fraction,
        feature_skew=feature_skew,
        node_config=node_config,
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
    val_fraction: float = 0.0,
    feature_skew: float = 0.0,
) -> tuple[list[DataLoader | tuple[DataLoader, DataLoader]], DataLoader | None]:
    """Digits split over ``num_clients`` clients: one shuffling ``DataLoader`` each, and the test loader.

    Args:
        num_clients: How many clients. Defaults to ``10``.
        partition: ``"iid"``, ``"dirichlet"`` or ``"shards"``. Defaults to ``"dirichlet"``.
        alpha: Dirichlet concentration. Defaults to ``0.5``.
        shards_per_client: Shards per client for ``"shards"``. Defaults to ``2``.
        batch_size: Batch size of the client loaders, training and validation (the test loader uses 256).
            Defaults to ``32``.
        test_fraction: Held-out share for the server's evaluation, in [0, 1); with ``0`` every sample
            goes to the clients and the test loader is ``None``. Defaults to ``0.2``.
        seed: Seed of the split, the partition, the clients' validation splits and their feature skews.
            Defaults to ``0``.
        val_fraction: Share of each client's own samples held out as its validation data, in [0, 1):
            a client of ``n >= 2`` samples holds out ``min(n - 1, max(1, round(val_fraction * n)))``,
            stratified by label where its classes allow (see :func:`~federated.data.validation_split`),
            and its entry becomes a ``(train_loader, val_loader)`` pair. Defaults to ``0.0``.
        feature_skew: Feature skew, the setting of FedBN: each client's features, training and
            validation alike, go through its own seeded ``x * scale + shift``, per feature, with
            ``log(scale)`` and ``shift`` of spread ``feature_skew`` in units of a standardised feature
            (:func:`~federated.data.skew_features`); the test split is left as it is. ``0`` leaves every
            sample as it is. Defaults to ``0.0``.

    Raises:
        ArgumentError: ``test_fraction`` or ``val_fraction`` is not in [0, 1), ``feature_skew`` not in
            [0, inf), or a partition argument is out of range.

    Example:
        >>> loaders, test = digits_federation(num_clients=3, partition="iid", val_fraction=0.2, test_fraction=0.0)
        >>> [(len(fit.dataset), len(val.dataset)) for fit, val in loaders], test
        ([(479, 120), (479, 120), (479, 120)], None)
    """
    data = digits(
        num_clients=num_clients, partition=partition, alpha=alpha, shards_per_client=shards_per_client,
        batch_size=batch_size, test_fraction=test_fraction, seed=seed, val_fraction=val_fraction,
        feature_skew=feature_skew,
    )
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
    val_fraction: float = 0.0,
    feature_skew: float = 0.0,
    node_config: NodeConfig = None,
) -> FederatedData:
    """scikit-learn's breast cancer set (569 samples, 30 standardised features, 2 classes).

    The arguments are :func:`digits_federation`'s and ``node_config`` is :func:`from_arrays`'; the
    standardisation statistics, :func:`digits`'.
    """
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    train, test = _train_test(x, y, test_fraction, seed)
    return from_arrays(
        train,
        test,
        num_clients=num_clients,
        partition_type=partition,
        alpha=alpha,
        shards_per_client=shards_per_client,
        batch_size=batch_size,
        seed=seed,
        val_fraction=val_fraction,
        feature_skew=feature_skew,
        node_config=node_config,
    )


def as_federated_data(value: Any, site: int | str | None = None) -> FederatedData:
    """Accept what a data function returns for ``site`` (:func:`site_of`) as a ``FederatedData``.

    For the whole federation or the server: a ``FederatedData`` or a ``(client_loaders,
    test_loader)`` pair (``client_loaders`` a list); the server may also return ``None``, holding
    nothing. For one client (a SuperNode): the same, of that client alone, or its one entry (a
    ``DataLoader``, ``Dataset``, ``(train, val)`` pair or ``LightningDataModule``).

    Raises:
        TypeError: ``value`` is none of these.
    """
    if isinstance(value, FederatedData):
        return value
    pair = isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], list)  # not a (train, val) pair
    if isinstance(site, int) and not pair:
        return FederatedData(client_loaders=[value], test_loader=None)
    if value is None and site == "server":
        return FederatedData(client_loaders=[], test_loader=None)
    if isinstance(value, tuple) and len(value) == 2:
        return FederatedData(client_loaders=list(value[0]), test_loader=value[1])
    raise TypeError(
        f"a data function must return FederatedData or (client_loaders, test_loader), got {type(value).__name__}"
    )
