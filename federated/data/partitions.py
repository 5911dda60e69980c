"""Seeded IID, Dirichlet and shard partitions of any labels over clients, each client's own validation
hold-out, each client's feature skew, and the clients' datasets.

Everything here is deterministic given ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch.utils.data import TensorDataset

from callbacks.arguments import check_number
from federated.rules import COUNT, HELD_OUT, POSITIVE

__all__ = [
    "PARTITIONS",
    "Partition",
    "client_datasets",
    "partition",
    "partition_dirichlet",
    "partition_iid",
    "partition_shards",
    "skew_features",
    "validation_split",
]

PARTITIONS = ("iid", "dirichlet", "shards")
Partition = Literal["iid", "dirichlet", "shards"]
_SKEW_STREAM = 1  # (seed, client, 1) seeds a client's feature skew; (seed, client) its validation split


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
    POSITIVE.check("alpha", alpha)
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
    COUNT.check("shards_per_client", shards_per_client)
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


def validation_split(
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    parts: Sequence[Sequence[int]],
    val_fraction: float,
    seed: int = 0,
) -> list[tuple[list[int], list[int]]]:
    """Split each client's part of a partition into its own training and validation indices.

    A client with ``n`` samples holds out ``k = min(n - 1, max(1, round(val_fraction * n)))`` of them
    (Python's ``round``, half to even) when ``val_fraction > 0`` and ``n >= 2``, else none: it keeps at
    least one training sample, and every client that can spare a sample gets validation data. The
    split is stratified by label when every class of the client has at least two samples and both
    sides can hold one of each class, else plain random. It is seeded from ``(seed, client id)``, so a
    client's split is the same in every run and independent of the other clients. Both lists are
    sorted; with ``val_fraction=0`` each part comes back unchanged as the training indices.

    Args:
        labels: The label of every sample the parts index.
        parts: The clients' sample indices (client id = index), as :func:`partition` returns them.
        val_fraction: The share of each client's samples held out for its validation, in [0, 1).
        seed: The seed of the splits. Defaults to ``0``.

    Raises:
        ArgumentError: ``val_fraction`` is not in [0, 1).

    Example:
        >>> splits = validation_split([0, 1] * 10, [range(10), range(10, 19), [19]], 0.2)
        >>> [(len(train), len(val)) for train, val in splits]
        [(8, 2), (7, 2), (1, 0)]
    """
    HELD_OUT.check("val_fraction", val_fraction)
    y = _labels(labels)
    return [_hold_out(list(part), y, val_fraction, (seed, client)) for client, part in enumerate(parts)]


def _hold_out(
    part: list[int], y: np.ndarray, val_fraction: float, entropy: tuple[int, int]
) -> tuple[list[int], list[int]]:
    """``part`` split into training and validation indices by :func:`validation_split`'s rule."""
    n = len(part)
    if val_fraction == 0 or n < 2:
        return part, []
    from sklearn.model_selection import train_test_split

    k = min(n - 1, max(1, round(val_fraction * n)))
    part_labels = y[part]
    _, counts = np.unique(part_labels, return_counts=True)
    stratify = counts.min() >= 2 and min(k, n - k) >= len(counts)
    state = int(np.random.SeedSequence(entropy).generate_state(1)[0])
    train, val = train_test_split(
        np.asarray(part), test_size=k, random_state=state, stratify=part_labels if stratify else None
    )
    return sorted(train.tolist()), sorted(val.tolist())


def skew_features(features: torch.Tensor, feature_skew: float, *, client_id: int, seed: int = 0) -> torch.Tensor:
    """Client ``client_id``'s affine distortion of its ``features``: ``features * scale + shift``.

    The feature skew of FedBN (Li et al., 2021, "FedBN: Federated Learning on Non-IID Features via
    Local Batch Normalization"): every client sees the same kind of samples through its own
    instrument. Each feature (each entry of ``features.shape[1:]``) gets the client's
    ``scale = exp(feature_skew * a)`` and ``shift = feature_skew * b``, with ``a`` and ``b`` standard
    normal, drawn from ``(seed, client_id)``: the same distortion in every call, for all of the
    client's samples (training and validation alike), independent of the other clients. Meant for
    standardised features, where ``feature_skew`` is in units of a feature's spread.

    Args:
        features: The client's samples, the first dimension indexing them.
        feature_skew: How far the clients' distortions spread, in [0, inf); ``0`` returns
            ``features`` itself, unchanged.
        client_id: The client whose distortion to apply.
        seed: The seed of the distortions. Defaults to ``0``.

    Raises:
        ArgumentError: ``feature_skew`` is not in [0, inf).

    Example:
        >>> x = torch.zeros(3, 2)
        >>> skew_features(x, 0.0, client_id=0) is x
        True
        >>> a, b = (skew_features(x, 1.0, client_id=c, seed=0) for c in (0, 1))
        >>> bool(torch.all(a == a[0])), torch.equal(a, b)
        (True, False)
    """
    check_number("feature_skew", feature_skew, low=0)
    if feature_skew == 0:
        return features
    rng = np.random.default_rng(np.random.SeedSequence((seed, client_id, _SKEW_STREAM)))
    scale_exponent, shift = rng.standard_normal((2, *features.shape[1:]))
    dtype = features.dtype if features.is_floating_point() else torch.float32
    scale = torch.as_tensor(np.exp(feature_skew * scale_exponent), dtype=dtype, device=features.device)
    return features * scale + torch.as_tensor(feature_skew * shift, dtype=dtype, device=features.device)


def client_datasets(dataset: TensorDataset, parts: Sequence[Sequence[int]]) -> list[TensorDataset]:
    """One ``TensorDataset`` per part, holding copies of its rows (contiguous, fast to batch)."""
    return [TensorDataset(*(t[torch.as_tensor(list(p), dtype=torch.long)] for t in dataset.tensors)) for p in parts]


def _labels(labels: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        return labels.detach().cpu().numpy()
    return np.asarray(labels)


def _check_clients(num_clients: int, num_samples: int, min_samples: int = 1) -> None:
    COUNT.check("num_clients", num_clients)
    if num_clients * min_samples > num_samples:
        raise ValueError(
            f"{num_samples} samples cannot give {num_clients} clients {min_samples} sample(s) each; use fewer clients"
        )
