"""Seeded IID, Dirichlet and shard partitions of any labels over clients, and the clients' datasets.

Everything here is deterministic given ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch.utils.data import TensorDataset

from callbacks.arguments import check_number

__all__ = [
    "PARTITIONS",
    "Partition",
    "client_datasets",
    "partition",
    "partition_dirichlet",
    "partition_iid",
    "partition_shards",
]

PARTITIONS = ("iid", "dirichlet", "shards")
Partition = Literal["iid", "dirichlet", "shards"]


def partition_iid(num_samples: int, num_clients: int, seed: int = 0) -> list[list[int]]:
    """Shuffle ``range(num_samples)`` and deal it into ``num_clients`` parts of near-equal size.

    Example:
        >>> [len(p) for p in partition_iid(10, 3)]
        [4, 3, 3]
    """
    _check_clients(num_clients, num_samples)
    order = np.random.default_rng(seed).permutation(num_samples)
    return [sorted(part.tolist()) for part in np.array_split(order, num_clients)]


def partition_dirichlet(
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    num_clients: int,
    alpha: float = 0.5,
    seed: int = 0,
    min_samples: int = 2,
) -> list[list[int]]:
    """Non-IID label skew: each class is split over the clients with proportions ~ Dir(alpha).

    Small ``alpha`` gives each client few classes; large ``alpha`` approaches IID. Draws repeat
    (from the same seeded stream) until every client holds at least ``min_samples`` samples.

    Raises:
        ValueError: ``alpha`` <= 0, or the samples cannot give every client ``min_samples``.

    Example:
        >>> parts = partition_dirichlet([0, 1] * 50, num_clients=4, alpha=0.5, seed=1)
        >>> sum(len(p) for p in parts), min(len(p) for p in parts) >= 2
        (100, True)
    """
    y = _labels(labels)
    check_number("alpha", alpha, low=0, low_open=True)
    _check_clients(num_clients, len(y), min_samples)
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    for _ in range(1000):
        parts: list[list[int]] = [[] for _ in range(num_clients)]
        for cls in classes:
            idx = rng.permutation(np.flatnonzero(y == cls))
            shares = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(int)
            for part, chunk in zip(parts, np.split(idx, cuts), strict=True):
                part.extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_samples:
            return [sorted(p) for p in parts]
    raise ValueError(
        f"no Dirichlet(alpha={alpha}) draw in 1000 gave all {num_clients} clients >= {min_samples} samples; "
        "HINT: raise `alpha`, lower `min_samples` or use fewer clients"
    )


def partition_shards(
    labels: Sequence[int] | np.ndarray | torch.Tensor, num_clients: int, shards_per_client: int = 2, seed: int = 0
) -> list[list[int]]:
    """McMahan et al.'s pathological non-IID split: sort by label, cut into shards, deal each client some.

    Example:
        >>> parts = partition_shards([0] * 10 + [1] * 10, num_clients=2, shards_per_client=2, seed=0)
        >>> sorted(len(p) for p in parts)
        [10, 10]
    """
    y = _labels(labels)
    check_number("shards_per_client", shards_per_client, low=1, integer=True)
    num_shards = num_clients * shards_per_client
    _check_clients(num_clients, len(y))
    if num_shards > len(y):
        raise ValueError(f"{num_shards} shards need at least {num_shards} samples, got {len(y)}")
    rng = np.random.default_rng(seed)
    by_label = np.argsort(y, kind="stable")
    shards = np.array_split(by_label, num_shards)
    order = rng.permutation(num_shards)
    return [
        sorted(np.concatenate([shards[s] for s in order[c * shards_per_client : (c + 1) * shards_per_client]]).tolist())
        for c in range(num_clients)
    ]


def partition(
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    num_clients: int,
    kind: Partition = "iid",
    *,
    alpha: float = 0.5,
    shards_per_client: int = 2,
    seed: int = 0,
) -> list[list[int]]:
    """Dispatch to :func:`partition_iid`, :func:`partition_dirichlet` or :func:`partition_shards`.

    Raises:
        ValueError: Unknown ``kind``.
    """
    if kind == "iid":
        return partition_iid(len(_labels(labels)), num_clients, seed)
    if kind == "dirichlet":
        return partition_dirichlet(labels, num_clients, alpha=alpha, seed=seed)
    if kind == "shards":
        return partition_shards(labels, num_clients, shards_per_client=shards_per_client, seed=seed)
    raise ValueError(f"`partition` can be {', '.join(PARTITIONS)}, got {kind!r}")


def client_datasets(dataset: TensorDataset, parts: Sequence[Sequence[int]]) -> list[TensorDataset]:
    """One ``TensorDataset`` per part, holding copies of its rows (contiguous, fast to batch)."""
    return [TensorDataset(*(t[torch.as_tensor(list(p), dtype=torch.long)] for t in dataset.tensors)) for p in parts]


def _labels(labels: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        return labels.detach().cpu().numpy()
    return np.asarray(labels)


def _check_clients(num_clients: int, num_samples: int, min_samples: int = 1) -> None:
    check_number("num_clients", num_clients, low=1, integer=True)
    if num_clients * min_samples > num_samples:
        raise ValueError(
            f"{num_samples} samples cannot give {num_clients} clients {min_samples} sample(s) each; use fewer clients"
        )
