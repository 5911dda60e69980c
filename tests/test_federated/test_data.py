"""Seeded partitions of the digits, the clients' own validation splits and feature skews: complete, disjoint,
reproducible."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler, TensorDataset

from callbacks import ArgumentError
from federated import digits_federation, partition
from federated.data import (
    FederatedData,
    Partition,
    breast_cancer,
    digits,
    from_arrays,
    load_digits_data,
    partition_dirichlet,
    skew_features,
    validation_split,
)


@pytest.mark.parametrize("kind", ["iid", "dirichlet", "shards"])
def test_partition_is_complete_disjoint_and_seeded(kind: str) -> None:
    labels = load_digits_data()[0].tensors[1]
    parts = partition(labels, 10, kind, seed=3)  # type: ignore[arg-type]
    flat = [i for part in parts for i in part]
    assert sorted(flat) == list(range(len(labels)))
    assert parts == partition(labels, 10, kind, seed=3)  # type: ignore[arg-type]
    assert parts != partition(labels, 10, kind, seed=4)  # type: ignore[arg-type]


def test_dirichlet_small_alpha_skews_labels() -> None:
    labels = load_digits_data()[0].tensors[1].numpy()
    skewed = partition_dirichlet(labels, 10, alpha=0.1, seed=0)
    even = partition_dirichlet(labels, 10, alpha=100.0, seed=0)

    def classes_held(parts: list[list[int]]) -> float:  # mean number of classes with >= 5 samples
        return float(np.mean([(np.bincount(labels[p], minlength=10) >= 5).sum() for p in parts]))

    assert classes_held(skewed) < classes_held(even)
    assert min(len(p) for p in skewed) >= 2


def test_digits_federation_shapes() -> None:
    loaders, test = digits_federation(num_clients=5, partition="iid", batch_size=16, seed=0)
    x, y = next(iter(loaders[0]))
    assert x.shape == (16, 64) and y.dtype.is_floating_point is False
    assert sum(len(_dataset(_plain(entry))) for entry in loaders) + len(_dataset(test)) == 1797


def test_load_digits_data_standardises_with_training_statistics() -> None:
    train, test = load_digits_data(test_fraction=0.2, seed=0)
    x_train, x_test = train.tensors[0].double(), test.tensors[0].double()
    std = x_train.std(dim=0, unbiased=False)
    zeros = torch.zeros(64, dtype=torch.float64)
    assert torch.allclose(x_train.mean(dim=0), zeros, atol=1e-5)
    assert torch.allclose(std[std > 0], torch.ones_like(std[std > 0]))
    assert not torch.allclose(x_test.mean(dim=0), zeros, atol=1e-5)  # scaled with the training statistics


def test_partition_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="`partition` can be"):
        partition([0, 1], 2, "zipf")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`alpha`: must be a number in \(0, inf\), got 0"):
        partition_dirichlet([0, 1, 0, 1], 2, alpha=0)
    with pytest.raises(ValueError, match="cannot give 10 clients"):
        partition([0, 1, 2], 10, "iid")


def _rows(dataset: TensorDataset) -> list[tuple[tuple[float, ...], int]]:
    """The (features, label) rows of ``dataset``, sorted: a multiset to compare datasets by."""
    x, y = dataset.tensors
    return sorted(zip(map(tuple, x.tolist()), y.tolist(), strict=True))


def _dataset(loader: DataLoader | None) -> TensorDataset:
    assert loader is not None and isinstance(loader.dataset, TensorDataset)
    return loader.dataset


def _plain(entry: DataLoader | tuple[DataLoader, DataLoader]) -> DataLoader:
    assert isinstance(entry, DataLoader), "a client without validation data has a plain DataLoader"
    return entry


def _pair(entry: DataLoader | tuple[DataLoader, DataLoader]) -> tuple[DataLoader, DataLoader]:
    assert isinstance(entry, tuple), "a client with validation data has a (train_loader, val_loader) pair"
    return entry


def _expected_val_size(n: int, val_fraction: float) -> int:
    return min(n - 1, max(1, round(val_fraction * n))) if n >= 2 else 0


@pytest.mark.parametrize("kind", ["iid", "dirichlet", "shards"])
def test_validation_split_sizes_follow_the_rule(kind: Partition) -> None:
    labels = load_digits_data()[0].tensors[1]
    parts = partition(labels, 10, kind, seed=0)

    splits = validation_split(labels, parts, 0.15, seed=0)

    assert [len(val) for _, val in splits] == [_expected_val_size(len(p), 0.15) for p in parts]
    for part, (fit, val) in zip(parts, splits, strict=True):
        assert sorted(fit + val) == part and not set(fit) & set(val)


def test_validation_split_small_clients_keep_a_training_sample() -> None:
    labels = load_digits_data()[0].tensors[1]
    parts = [[0], [1, 2], [3, 4, 5], list(range(6, 26))]

    splits = validation_split(labels, parts, 0.1, seed=0)

    assert [(len(fit), len(val)) for fit, val in splits] == [(1, 0), (1, 1), (2, 1), (18, 2)]
    assert validation_split(labels, parts, 0.0) == [(p, []) for p in parts]


def test_validation_split_falls_back_to_random_for_tiny_classes() -> None:
    labels = [0, 0, 0, 0, 0, 1]  # class 1 has one sample: no stratified split possible

    ((fit, val),) = validation_split(labels, [range(6)], 0.5, seed=0)

    assert len(val) == 3 and sorted(fit + val) == list(range(6))


@pytest.mark.parametrize("kind", ["iid", "dirichlet", "shards"])
def test_digits_val_fraction_keeps_each_clients_samples(kind: Partition) -> None:
    plain = digits(num_clients=8, partition=kind, seed=1)

    held = digits(num_clients=8, partition=kind, seed=1, val_fraction=0.25)

    assert _rows(_dataset(held.test_loader)) == _rows(_dataset(plain.test_loader))
    for before, after in zip(plain.client_loaders, held.client_loaders, strict=True):
        client, (fit, val) = _dataset(_plain(before)), _pair(after)
        assert len(_dataset(val)) == _expected_val_size(len(client), 0.25)
        both = TensorDataset(*map(torch.cat, zip(_dataset(fit).tensors, _dataset(val).tensors, strict=True)))
        assert _rows(both) == _rows(client)  # no sample lost or duplicated
        assert val.batch_size == fit.batch_size == 32
        assert isinstance(val.sampler, SequentialSampler) and isinstance(fit.sampler, RandomSampler)


def test_digits_without_val_fraction_is_unchanged() -> None:
    default = digits(num_clients=4, partition="dirichlet", seed=2)

    zero = digits(num_clients=4, partition="dirichlet", seed=2, val_fraction=0.0)

    for a, b in zip(default.client_loaders, zero.client_loaders, strict=True):
        for ta, tb in zip(_dataset(_plain(a)).tensors, _dataset(_plain(b)).tensors, strict=True):
            assert torch.equal(ta, tb)  # same samples, same order


def test_from_arrays_client_of_one_sample_has_no_validation() -> None:
    train, test = load_digits_data()
    tiny = TensorDataset(*(t[:5] for t in train.tensors))

    data = from_arrays(
        tiny,
        test,
        num_clients=4,
        partition_type="iid",
        alpha=0.5,
        shards_per_client=2,
        batch_size=8,
        seed=0,
        val_fraction=0.5,
    )

    fit, val = _pair(data.client_loaders[0])  # iid parts of sizes 2, 1, 1, 1
    assert (len(_dataset(fit)), len(_dataset(val))) == (1, 1)
    assert [len(_dataset(_plain(entry))) for entry in data.client_loaders[1:]] == [1, 1, 1]


def test_val_split_is_stratified() -> None:
    data = digits(num_clients=5, partition="iid", seed=0, val_fraction=0.2)

    for entry in data.client_loaders:
        fit, val = (_dataset(loader).tensors[1] for loader in _pair(entry))
        client_counts = torch.bincount(torch.cat([fit, val]), minlength=10)
        val_counts = torch.bincount(val, minlength=10)
        assert (val_counts > 0).sum() >= 9
        assert torch.all((val_counts - 0.2 * client_counts).abs() <= 1)  # each class in the client's proportion


def test_val_split_is_seeded_per_client() -> None:
    labels = load_digits_data()[0].tensors[1]
    parts = partition(labels, 5, "dirichlet", seed=0)

    first = validation_split(labels, parts, 0.2, seed=0)

    assert first == validation_split(labels, parts, 0.2, seed=0)
    assert [val for _, val in first] != [val for _, val in validation_split(labels, parts, 0.2, seed=1)]
    assert validation_split(labels, parts[:1], 0.2, seed=0)[0] == first[0]  # independent of the other clients


def test_digits_val_split_is_the_same_in_two_calls() -> None:
    def val_rows(seed: int) -> list[list[tuple[tuple[float, ...], int]]]:
        data = digits(num_clients=5, seed=seed, val_fraction=0.2)
        return [_rows(_dataset(_pair(entry)[1])) for entry in data.client_loaders]

    assert val_rows(0) == val_rows(0)
    assert val_rows(0) != val_rows(1)


@pytest.mark.parametrize(("dataset", "total"), [(digits, 1797), (breast_cancer, 569)])
def test_test_fraction_zero_gives_every_sample_to_the_clients(
    dataset: Callable[..., FederatedData], total: int
) -> None:
    data = dataset(num_clients=4, partition="iid", test_fraction=0.0)

    assert data.test_loader is None
    assert sum(len(_dataset(_plain(entry))) for entry in data.client_loaders) == total
    loaders, test = digits_federation(num_clients=4, test_fraction=0.0, val_fraction=0.1)
    assert test is None
    assert sum(len(_dataset(loader)) for entry in loaders for loader in _pair(entry)) == 1797


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, float("nan"), "0.2"])
def test_val_fraction_out_of_range_names_it(value: Any) -> None:
    with pytest.raises(ArgumentError, match=r"`val_fraction`: must be a number in \[0, 1\), got"):
        digits(num_clients=3, val_fraction=value)
    with pytest.raises(ArgumentError, match=r"`val_fraction`: must be a number in \[0, 1\)"):
        validation_split([0, 1], [[0, 1]], value)


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_test_fraction_out_of_range_names_it(value: float) -> None:
    with pytest.raises(ArgumentError, match=r"`test_fraction`: must be a number in \[0, 1\), got"):
        breast_cancer(num_clients=3, test_fraction=value)


def test_feature_skew_distorts_each_clients_train_and_val_alike() -> None:
    plain = digits(num_clients=4, partition="dirichlet", seed=3, val_fraction=0.2)

    skewed = digits(num_clients=4, partition="dirichlet", seed=3, val_fraction=0.2, feature_skew=0.7)

    assert _rows(_dataset(skewed.test_loader)) == _rows(_dataset(plain.test_loader))  # the server's split as it was
    for client_id, (before, after) in enumerate(zip(plain.client_loaders, skewed.client_loaders, strict=True)):
        for loader_before, loader_after in zip(_pair(before), _pair(after), strict=True):
            (x, y), (x_skewed, y_skewed) = _dataset(loader_before).tensors, _dataset(loader_after).tensors
            assert torch.equal(y_skewed, y)  # the same samples, in the same order
            assert torch.equal(x_skewed, skew_features(x, 0.7, client_id=client_id, seed=3))
            assert not torch.allclose(x_skewed, x)


def test_feature_skew_is_an_affine_map_per_client_and_feature() -> None:
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))

    skewed = skew_features(x, 0.5, client_id=1, seed=0)

    ones, zeros = torch.ones(1, 6), torch.zeros(1, 6)
    scale = skew_features(ones, 0.5, client_id=1, seed=0) - skew_features(zeros, 0.5, client_id=1, seed=0)
    shift = skew_features(zeros, 0.5, client_id=1, seed=0)
    assert torch.allclose(skewed, x * scale + shift, atol=1e-6)
    assert torch.all(scale > 0) and len(set(scale.flatten().tolist())) == 6  # a scale of its own per feature
    assert skewed.dtype == x.dtype


def test_feature_skew_is_seeded_per_client() -> None:
    x = torch.randn(10, 64, generator=torch.Generator().manual_seed(0))

    first = skew_features(x, 1.0, client_id=2, seed=0)

    assert torch.equal(first, skew_features(x, 1.0, client_id=2, seed=0))
    assert not torch.allclose(first, skew_features(x, 1.0, client_id=3, seed=0))
    assert not torch.allclose(first, skew_features(x, 1.0, client_id=2, seed=1))


def test_feature_skew_zero_changes_nothing() -> None:
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    default = digits(num_clients=4, partition="dirichlet", seed=2, val_fraction=0.1)

    zero = digits(num_clients=4, partition="dirichlet", seed=2, val_fraction=0.1, feature_skew=0.0)

    assert skew_features(x, 0.0, client_id=0) is x
    for a, b in zip(default.client_loaders, zero.client_loaders, strict=True):
        for loader_a, loader_b in zip(_pair(a), _pair(b), strict=True):
            for ta, tb in zip(_dataset(loader_a).tensors, _dataset(loader_b).tensors, strict=True):
                assert torch.equal(ta, tb)  # same samples, same order, same values


@pytest.mark.parametrize("value", [-0.1, float("inf"), float("nan"), "0.5"])
def test_feature_skew_out_of_range_names_it(value: Any) -> None:
    with pytest.raises(ArgumentError, match=r"`feature_skew`: must be a number in \[0, inf\), got"):
        digits(num_clients=3, feature_skew=value)
    with pytest.raises(ArgumentError, match=r"`feature_skew`: must be a number in \[0, inf\)"):
        skew_features(torch.zeros(2, 2), value, client_id=0)


def test_digits_federation_takes_the_largest_seed_and_names_a_wider_one() -> None:
    # Execute: 2**32 - 1 is scikit-learn's largest random_state, and the largest seed
    loaders, _ = digits_federation(num_clients=2, partition="iid", seed=2**32 - 1)

    # Assert
    assert len(loaders) == 2
    with pytest.raises(ArgumentError, match=r"^`seed`: must be an int in \[0, 4294967295\], got 4294967296$"):
        digits_federation(num_clients=2, partition="iid", seed=2**32)
