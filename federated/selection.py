"""The clients a round trains: a seeded sample, uniform or by the weights a callback set for the round."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

__all__ = ["sample_clients"]

log = logging.getLogger("federated.trainer")


def sample_clients(
    rng: np.random.Generator, num_clients: int, k: int, weights: Sequence[float] | None, round_num: int
) -> list[int]:
    """``k`` distinct client ids of ``num_clients``, sorted: uniform, or in proportion to ``weights``.

    With ``weights``, only clients of a positive weight are drawn: fewer than ``k`` of them are all
    drawn, with a warning naming the round.

    Example:
        >>> sample_clients(np.random.default_rng(0), 10, 3, None, round_num=1)
        [5, 6, 9]
        >>> sample_clients(np.random.default_rng(0), 4, 2, [0.0, 1.0, 0.0, 0.0], round_num=1)
        [1]
    """
    if weights is None:
        return sorted(int(c) for c in rng.choice(num_clients, size=k, replace=False))
    p = np.asarray(weights)
    positive = int(np.count_nonzero(p))
    if positive < k:
        log.warning(
            "round %d: `client_selection_weights` gives %d client(s) a positive weight, fewer than "
            "clients_per_round=%d; sampling those", round_num, positive, k
        )
    return sorted(int(c) for c in rng.choice(num_clients, size=min(k, positive), replace=False, p=p / p.sum()))
