"""Byzantine-robust aggregation: Krum, Multi-Krum and Bulyan, pure functions over the K states of a round.

Krum (Blanchard et al., 2017) scores each of the ``n`` states by the sum of its squared L2
distances to its ``n - f - 2`` nearest other states, ``f`` being the number of attackers
tolerated; Krum keeps the lowest-scoring state, Multi-Krum averages the ``m`` lowest-scoring ones.
Bulyan (El Mhamdi et al., 2018) applies Krum again and again, each pick removed from the set,
until it holds ``theta = n - 2f`` states, then takes per coordinate the mean of the
``beta = theta - 2f`` values closest to the selected states' coordinate-wise median.

Distances are taken over the floating tensors of a state flattened together, in ``float64`` on
the CPU, one tensor name at a time (memory: one tensor of K states, and the K x K matrix).
Integer and boolean tensors (BatchNorm's ``num_batches_tracked``) take no part in the distances
and get the rounded (unweighted) mean of the selected states, as in :func:`~federated.strategies.aggregate.median`.
Ties of scores go to the state that came first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from callbacks.arguments import check_number
from federated.messages import StateDict
from federated.strategies.aggregate import _cast, _middle, _sorted_stacks, _stacks, weighted_average

__all__ = [
    "bulyan",
    "bulyan_selection",
    "krum_scores",
    "multi_krum",
    "multi_krum_selection",
    "squared_distances",
]


def squared_distances(states: Sequence[StateDict]) -> torch.Tensor:
    """The K x K matrix of squared L2 distances between the states' floating tensors, flattened together.

    Computed in ``float64`` on the CPU, one tensor name at a time, by the Gram trick on values
    centred on their mean (distances do not move with the origin, and centring keeps the
    subtraction ``|x|^2 + |y|^2 - 2 x.y`` accurate for nearby states far from zero).

    Raises:
        ValueError: ``states`` is empty or the states are not alike (names, shapes), or one is complex.

    Example:
        >>> states = [{"w": torch.tensor([0.0, 0.0])}, {"w": torch.tensor([3.0, 4.0])}]
        >>> squared_distances(states)
        tensor([[ 0., 25.],
                [25.,  0.]], dtype=torch.float64)
    """
    distances = torch.zeros(len(states), len(states), dtype=torch.float64)
    for name, stacked in _stacks(states):
        if not states[0][name].dtype.is_floating_point:
            continue
        flat = stacked.cpu().reshape(len(states), -1)
        flat = flat - flat.mean(0)
        gram = flat @ flat.T
        norms = gram.diagonal()
        distances += norms[:, None] + norms[None, :] - 2 * gram
    return distances.clamp_(min=0.0).fill_diagonal_(0.0)


def krum_scores(states: Sequence[StateDict], num_malicious: int) -> torch.Tensor:
    """Each state's Krum score: the sum of its squared distances to its ``n - f - 2`` nearest other states.

    Args:
        states: The ``n`` states of the round.
        num_malicious: ``f``, the number of attackers tolerated; Krum needs ``n >= 2f + 3``.

    Raises:
        ValueError: ``num_malicious`` is not an int ``>= 0``, or there are fewer than ``2f + 3`` states.

    Example:
        >>> states = [{"w": torch.tensor([v])} for v in (0.0, 1.0, 3.0, 10.0)]
        >>> krum_scores(states, num_malicious=0)  # the 2 nearest others of each
        tensor([ 10.,   5.,  13., 130.], dtype=torch.float64)
    """
    _check_count("Krum", len(states), num_malicious, 2 * num_malicious + 3, "n >= 2f + 3")
    return _scores(squared_distances(states), len(states) - num_malicious - 2)


def multi_krum_selection(states: Sequence[StateDict], num_malicious: int, num_to_select: int) -> list[int]:
    """The indices of the ``num_to_select`` states of lowest Krum score, lowest first (ties: the earlier state).

    Raises:
        ValueError: As :func:`krum_scores`, or ``num_to_select`` is not an int in ``[1, n]``.
    """
    check_number("num_to_select", num_to_select, low=1, high=len(states), integer=True)
    scores = krum_scores(states, num_malicious)
    return torch.argsort(scores, stable=True)[:num_to_select].tolist()


def multi_krum(states: Sequence[StateDict], num_malicious: int, num_to_select: int = 1) -> dict[str, torch.Tensor]:
    """The unweighted mean of the ``num_to_select`` states of lowest Krum score; ``1`` is Krum (that state).

    Args:
        states: The ``n`` states of the round.
        num_malicious: ``f``, the number of attackers tolerated; needs ``n >= 2f + 3``.
        num_to_select: ``m``, how many states are averaged. Defaults to ``1``.

    Raises:
        ValueError: As :func:`multi_krum_selection`.

    Example:
        >>> states = [{"w": torch.tensor([v])} for v in (0.0, 1.0, 3.0, 10.0)]
        >>> multi_krum(states, num_malicious=0, num_to_select=2)["w"]
        tensor([0.5000])
    """
    chosen = multi_krum_selection(states, num_malicious, num_to_select)
    return weighted_average((states[i], 1.0) for i in chosen)


def bulyan_selection(states: Sequence[StateDict], num_malicious: int) -> list[int]:
    """The indices of the ``theta = n - 2f`` states Bulyan keeps, in the order Krum picked them.

    Each pick is the state of lowest Krum score among those not picked yet, scored within that
    remaining set; once fewer than ``f + 3`` remain, a state's score is its distance to its one
    nearest other (as Flower's ``aggregate_bulyan``), and the last one is taken as it is.

    Raises:
        ValueError: ``num_malicious`` is not an int ``>= 0``, or there are fewer than ``4f + 3`` states.
    """
    _check_count("Bulyan", len(states), num_malicious, 4 * num_malicious + 3, "n >= 4f + 3")
    distances = squared_distances(states)
    remaining = list(range(len(states)))
    chosen: list[int] = []
    for _ in range(len(states) - 2 * num_malicious):
        left = len(remaining)
        nearest = min(max(1, left - num_malicious - 2), left - 1)
        scores = _scores(distances[remaining][:, remaining], nearest)
        chosen.append(remaining.pop(int(torch.argsort(scores, stable=True)[0])))
    return chosen


def bulyan(states: Sequence[StateDict], num_malicious: int) -> dict[str, torch.Tensor]:
    """Bulyan: per coordinate, the mean of the ``n - 4f`` values of the selected states closest to their median.

    The states selected are :func:`bulyan_selection`'s ``theta = n - 2f``; per coordinate, the
    ``beta = theta - 2f`` of their values nearest to their median (for an even ``theta``, the
    mean of the two middle values) are averaged. With ``f = 0`` it is the plain mean.

    Args:
        states: The ``n`` states of the round.
        num_malicious: ``f``, the number of attackers tolerated; needs ``n >= 4f + 3``.

    Raises:
        ValueError: As :func:`bulyan_selection`.

    Example:
        >>> states = [{"w": torch.tensor([v])} for v in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 100.0)]
        >>> bulyan(states, num_malicious=1)["w"]  # keeps 0..5, then the 4 values nearest 2.5
        tensor([2.5000])
    """
    chosen = bulyan_selection(states, num_malicious)
    selected = [states[i] for i in chosen]
    beta = len(states) - 4 * num_malicious
    out: dict[str, torch.Tensor] = {}
    for name, ranked in _sorted_stacks(selected):
        dtype = states[0][name].dtype
        if not dtype.is_floating_point:
            out[name] = _cast(ranked.mean(0), dtype)
            continue
        nearest = torch.argsort((ranked - _middle(ranked)).abs(), dim=0, stable=True)[:beta]
        out[name] = _cast(torch.gather(ranked, 0, nearest).mean(0), dtype)
    return out


def _scores(distances: torch.Tensor, nearest: int) -> torch.Tensor:
    """Each row's sum of its ``nearest`` smallest distances to the others (its own zero left out)."""
    others = distances + torch.diag(torch.full((distances.shape[0],), float("inf"), dtype=distances.dtype))
    return torch.sort(others, dim=1).values[:, :nearest].sum(1)


def _check_count(method: str, count: int, num_malicious: int, needed: int, requirement: str) -> None:
    check_number("num_malicious", num_malicious, low=0, integer=True)
    if count < needed:
        raise ValueError(
            f"{method} with f={num_malicious} needs at least {needed} states ({requirement}), got {count}"
        )
