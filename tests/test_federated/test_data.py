"""Seeded partitions of the digits: complete, disjoint, reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from federated import digits_federation, partition
from federated.data import load_digits_data, partition_dirichlet


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
    assert sum(len(dl.dataset) for dl in loaders) + len(test.dataset) == 1797


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
