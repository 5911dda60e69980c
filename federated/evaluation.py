"""Federated evaluation's small parts: which clients evaluate, and how their metrics combine."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from federated.client import Client
from federated.results import ClientEvaluation
from lightning_bridge.metrics import floats

__all__ = ["MetricsAggregation", "client_metrics", "evaluators", "weighted_mean"]

MetricsAggregation = Callable[[list[tuple[int, dict[str, float]]]], Mapping[str, float]]
"""Flower's ``evaluate_metrics_aggregation_fn``: ``[(num_samples, metrics), ...]`` to the aggregate."""


def evaluators(clients: Sequence[Client], count: int, seed: np.random.SeedSequence) -> list[int]:
    """``count`` client ids drawn without replacement, seeded, among the clients with validation data; sorted."""
    able = [c.client_id for c in clients if c.num_val_samples > 0]
    rng = np.random.default_rng(seed)
    return sorted(int(c) for c in rng.choice(able, size=min(count, len(able)), replace=False))


def client_metrics(
    evaluations: Sequence[ClientEvaluation], aggregation: MetricsAggregation | None = None
) -> dict[str, float]:
    """The clients' evaluation metrics combined (sample-weighted, or by ``aggregation``), under ``clients/``.

    Example:
        >>> client_metrics([ClientEvaluation(0, 10, {"accuracy": 0.5}), ClientEvaluation(1, 30, {"accuracy": 0.9})])
        {'clients/accuracy': 0.8}
    """
    if not evaluations:
        return {}
    pairs = [(e.num_samples, dict(e.metrics)) for e in evaluations]
    combined = weighted_mean(pairs) if aggregation is None else floats(aggregation(pairs))
    return {f"clients/{name}": value for name, value in combined.items()}


def weighted_mean(pairs: Sequence[tuple[int, Mapping[str, float]]]) -> dict[str, float]:
    """The sample-weighted mean of each metric over ``(num_samples, metrics)`` pairs; NaN and inf left out.

    Example:
        >>> weighted_mean([(1, {"accuracy": 0.5}), (3, {"accuracy": 1.0})])
        {'accuracy': 0.875}
    """
    sums: dict[str, float] = {}
    totals: dict[str, float] = {}
    for num_samples, metrics in pairs:
        for key, value in metrics.items():
            if math.isfinite(value):
                sums[key] = sums.get(key, 0.0) + value * num_samples
                totals[key] = totals.get(key, 0.0) + num_samples
    return {key: sums[key] / totals[key] for key in sums}
