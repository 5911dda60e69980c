"""``evaluate.clients.aggregation`` functions written for Flower 1.41's message API, called as this project's.

This project's aggregation takes ``[(num_samples, metrics), ...]`` and returns a mapping of floats
(the legacy ``evaluate_metrics_aggregation_fn``). Flower 1.41's ``evaluate_metrics_aggr_fn`` takes
``(records, weighting_metric_name)``, a list of ``RecordDict`` each holding one ``MetricRecord`` with
the client's sample count under ``weighting_metric_name``, and returns a ``MetricRecord``; such a
function (two required positional parameters) is wrapped so that the round loop calls it as its own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from federated.backends.flower_records import import_flwr

__all__ = ["WEIGHTING_KEY", "as_aggregation", "takes_records"]

WEIGHTING_KEY = "num-examples"
"""The ``weighting_metric_name`` a Flower 1.41 function is given (``FedAvg``'s ``weighted_by_key`` default)."""


def takes_records(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` has Flower 1.41's signature: two required positional parameters."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: this project's form
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in positional and p.default is inspect.Parameter.empty for p in parameters) == 2


def as_aggregation(fn: Callable[..., Any]) -> Callable[[list[tuple[int, dict[str, float]]]], Mapping[str, float]]:
    """``fn`` as this project's aggregation: unchanged, or wrapped when it :func:`takes_records`.

    Example:
        >>> def best(pairs):
        ...     return {"accuracy": max(m["accuracy"] for _, m in pairs)}
        >>> as_aggregation(best) is best, takes_records(lambda records, weighting_metric_name: {})
        (True, True)
    """
    if not takes_records(fn):
        return fn

    def aggregate(pairs: list[tuple[int, dict[str, float]]]) -> Mapping[str, float]:
        flwr = import_flwr()
        records = [
            flwr.RecordDict({"metrics": flwr.MetricRecord({**metrics, WEIGHTING_KEY: num_samples})})
            for num_samples, metrics in pairs
        ]
        return dict(fn(records, WEIGHTING_KEY))

    return aggregate
