"""Federated evaluation's small parts: which clients evaluate, and how their metrics combine."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from federated.client.client import Client
from federated.messages import ClientEvaluation, ClientFailure
from lightning_bridge.metrics import floats

__all__ = [
    "MetricsAggregation",
    "aggregated_floats",
    "client_metrics",
    "evaluators",
    "sort_evaluations",
    "weighted_mean",
]

log = logging.getLogger(__name__)

MetricsAggregation = Callable[[list[tuple[int, dict[str, float]]]], Mapping[str, float]]
"""Flower's ``evaluate_metrics_aggregation_fn``: ``[(num_samples, metrics), ...]`` to the aggregate."""


def evaluators(clients: Sequence[Client], count: int, seed: np.random.SeedSequence) -> list[int]:
    """``count`` client ids drawn without replacement, seeded, among the clients with validation data; sorted."""
    able = [c.client_id for c in clients if c.num_val_samples > 0]
    rng = np.random.default_rng(seed)
    return sorted(int(c) for c in rng.choice(able, size=min(count, len(able)), replace=False))


def sort_evaluations(
    outcomes: Iterable[ClientEvaluation | ClientFailure], round_num: int
) -> tuple[list[ClientEvaluation], list[ClientFailure]]:
    """A round's client evaluations apart from its failures, each failure logged as a warning."""
    evaluations: list[ClientEvaluation] = []
    failures: list[ClientFailure] = []
    for outcome in outcomes:
        if isinstance(outcome, ClientFailure):
            log.warning("round %d: client %d did not evaluate: %s", round_num, outcome.client_id, outcome.error)
            failures.append(outcome)
        else:
            evaluations.append(outcome)
    return evaluations, failures


def client_metrics(
    evaluations: Sequence[ClientEvaluation], aggregation: MetricsAggregation | None = None
) -> dict[str, float]:
    """The clients' evaluation metrics combined (sample-weighted, or by ``aggregation``), under ``clients/``.

    The weighted mean of a metric leaves out the clients that report it NaN or infinite, with a
    warning naming the metric and those clients; a metric no client reports finite is left out
    whole. ``aggregation`` gets every value as reported.

    Raises:
        TypeError: ``aggregation`` returned something other than a dict of metric names to numbers.

    Example:
        >>> client_metrics([ClientEvaluation(0, 10, {"accuracy": 0.5}), ClientEvaluation(1, 30, {"accuracy": 0.9})])
        {'clients/accuracy': 0.8}
    """
    if not evaluations:
        return {}
    pairs = [(e.num_samples, dict(e.metrics)) for e in evaluations]
    if aggregation is None:
        _warn_non_finite(evaluations)
        combined = weighted_mean(pairs)
    else:
        combined = aggregated_floats(aggregation(pairs))
    return {f"clients/{name}": value for name, value in combined.items()}


def aggregated_floats(returned: Any) -> dict[str, float]:
    """What an ``evaluate_metrics_aggregation_fn`` returned, as floats; anything else is refused, not dropped.

    Raises:
        TypeError: ``returned`` is not a mapping of metric names to numbers (or one-element tensors).

    Example:
        >>> aggregated_floats({"accuracy": 0.5, "n": 3})
        {'accuracy': 0.5, 'n': 3.0}
    """
    what = "`evaluate_metrics_aggregation_fn` must return a dict of metric names to numbers"
    if not isinstance(returned, Mapping):
        raise TypeError(f"{what}, got {type(returned).__name__}: {_short(returned)}")
    for name, value in returned.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not isinstance(name, str) or not (number or (isinstance(value, torch.Tensor) and value.numel() == 1)):
            raise TypeError(f"{what}; its {name!r} is {type(value).__name__} {_short(value)}")
    return floats(returned)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _warn_non_finite(evaluations: Sequence[ClientEvaluation]) -> None:
    """Warn, once per metric, of the clients whose value of it is NaN or infinite (the mean leaves them out)."""
    bad: dict[str, list[int]] = {}
    for evaluation in evaluations:
        for name, value in evaluation.metrics.items():
            if not math.isfinite(value):
                bad.setdefault(name, []).append(evaluation.client_id)
    for name, clients in bad.items():
        ids = ", ".join(str(c) for c in clients)
        log.warning("clients/%s: client(s) %s evaluated it as NaN or infinite; left out of its mean", name, ids)


def weighted_mean(
    pairs: Sequence[tuple[int, Mapping[str, float]]], largest: Collection[str] = ()
) -> dict[str, float]:
    """The sample-weighted mean of each metric over ``(num_samples, metrics)`` pairs; NaN and inf left out.

    The metrics named in ``largest`` take their largest value instead (a privacy loss: the worst
    client's), an infinite one included.

    Example:
        >>> weighted_mean([(1, {"accuracy": 0.5, "dp/epsilon": 2.0}), (3, {"accuracy": 1.0, "dp/epsilon": 1.5})],
        ...               largest={"dp/epsilon"})
        {'accuracy': 0.875, 'dp/epsilon': 2.0}
    """
    peaks: dict[str, float] = {}
    sums: dict[str, float] = {}
    totals: dict[str, float] = {}
    for num_samples, metrics in pairs:
        for key, value in metrics.items():
            if key in largest:
                if not math.isnan(value):
                    peaks[key] = max(peaks.get(key, value), value)
            elif math.isfinite(value):
                sums[key] = sums.get(key, 0.0) + value * num_samples
                totals[key] = totals.get(key, 0.0) + num_samples
    return {**{key: sums[key] / totals[key] for key in sums}, **peaks}
