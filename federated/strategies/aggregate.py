"""Sample-weighted averaging of model states: pure functions over ``(state, num_samples)`` pairs.

The streaming form keeps one running sum per tensor (:class:`WeightedSum`), so aggregating K
updates needs the memory of the accumulator plus one update, whatever K is; Flower's
``aggregate`` holds all K. :func:`weighted_average_reference` stacks every update and is kept as
the plain-formula reference for tests.

The robust aggregates, :func:`median` and :func:`trimmed_mean`, are coordinate-wise order
statistics: they need every state of the round at once (K copies in memory), and they do not
weight by samples (a client cannot buy influence by claiming many samples), as Flower's.

Floating tensors are summed in ``float64`` (``complex128`` for complex ones) and cast back to their
own dtype at the end. Integer and boolean tensors (BatchNorm's ``num_batches_tracked``) get the
weighted mean rounded to the nearest integer, cast back to their dtype (for booleans: the weighted
majority).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from callbacks.arguments import check_number
from federated.messages import StateDict

__all__ = [
    "StateDict",
    "WeightedSum",
    "accumulate",
    "finalize",
    "init_sum",
    "median",
    "trimmed_mean",
    "weighted_average",
    "weighted_average_reference",
]


@dataclass
class WeightedSum:
    """A running sample-weighted sum of model states.

    Attributes:
        sums: One accumulator per tensor name, in the accumulation dtype.
        dtypes: The dtype each tensor goes back to in :func:`finalize`.
        total: The sum of the weights folded in so far.
        count: How many states were folded in.

    Example:
        >>> acc = init_sum({"w": torch.zeros(2)})
        >>> acc = accumulate(acc, {"w": torch.tensor([1.0, 2.0])}, num_samples=1)
        >>> acc = accumulate(acc, {"w": torch.tensor([4.0, 5.0])}, num_samples=2)
        >>> finalize(acc)["w"]
        tensor([3., 4.])
    """

    sums: dict[str, torch.Tensor]
    dtypes: dict[str, torch.dtype]
    total: float = 0.0
    count: int = field(default=0)


def init_sum(template: StateDict, dtype: torch.dtype = torch.float64) -> WeightedSum:
    """Return an empty accumulator shaped like ``template`` (on the template tensors' devices).

    Args:
        template: A state with the names, shapes and dtypes of the states to come.
        dtype: The accumulation dtype of real tensors. Defaults to ``torch.float64``.

    Raises:
        ValueError: ``dtype`` is not a floating dtype.
    """
    if not dtype.is_floating_point:
        raise ValueError(f"`dtype` must be a floating dtype, got {dtype}")
    sums: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for name, tensor in template.items():
        acc_dtype = torch.complex128 if tensor.is_complex() else dtype
        sums[name] = torch.zeros(tensor.shape, dtype=acc_dtype, device=tensor.device)
        dtypes[name] = tensor.dtype
    return WeightedSum(sums=sums, dtypes=dtypes)


def accumulate(acc: WeightedSum, state: StateDict, num_samples: float) -> WeightedSum:
    """Fold ``state`` with weight ``num_samples`` into ``acc`` (in place) and return ``acc``.

    No copy of ``state`` is kept: each tensor is added into its accumulator with the weight as
    ``alpha``, so the caller may free ``state`` at once.

    Raises:
        ValueError: ``num_samples`` is not a positive finite number, or ``state`` does not have the
            names and shapes of the template.
    """
    weight = check_number("num_samples", float(num_samples), low=0, low_open=True)
    _check_names(acc.sums, state)
    with torch.no_grad():
        for name, total in acc.sums.items():
            tensor = state[name]
            if tensor.shape != total.shape:
                raise ValueError(f"`{name}` has shape {tuple(tensor.shape)}, expected {tuple(total.shape)}")
            if tensor.dtype == torch.bool:
                tensor = tensor.to(torch.uint8)
            total.add_(tensor.to(total.device), alpha=weight)
    acc.total += weight
    acc.count += 1
    return acc


def finalize(acc: WeightedSum) -> dict[str, torch.Tensor]:
    """Return the weighted mean held by ``acc``, each tensor in its original dtype.

    Raises:
        ValueError: Nothing was accumulated.
    """
    if acc.count == 0 or acc.total <= 0:
        raise ValueError("cannot average zero states: no update was accumulated")
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, total in acc.sums.items():
            out[name] = _cast(total / acc.total, acc.dtypes[name])
    return out


def weighted_average(
    pairs: Iterable[tuple[StateDict, float]], dtype: torch.dtype = torch.float64
) -> dict[str, torch.Tensor]:
    """The sample-weighted mean of ``(state, num_samples)`` pairs, consumed one at a time.

    ``pairs`` may be a generator: only one state is alive at a time, besides the accumulator.

    Example:
        >>> states = [({"w": torch.tensor([0.0])}, 1), ({"w": torch.tensor([3.0])}, 2)]
        >>> weighted_average(states)["w"]
        tensor([2.])
    """
    acc: WeightedSum | None = None
    for state, num_samples in pairs:
        if acc is None:
            acc = init_sum(state, dtype)
        accumulate(acc, state, num_samples)
    if acc is None:
        raise ValueError("cannot average zero states: `pairs` is empty")
    return finalize(acc)


def weighted_average_reference(pairs: Iterable[tuple[StateDict, float]]) -> dict[str, torch.Tensor]:
    """The textbook formula ``sum(n_i * w_i) / sum(n_i)`` over all states at once (K copies in memory).

    Kept to check the streaming form against; same dtype rules.
    """
    items = list(pairs)
    if not items:
        raise ValueError("cannot average zero states: `pairs` is empty")
    weights = torch.tensor([float(n) for _, n in items], dtype=torch.float64)
    first = items[0][0]
    out: dict[str, torch.Tensor] = {}
    for name, tensor in first.items():
        acc_dtype = torch.complex128 if tensor.is_complex() else torch.float64
        stacked = torch.stack([state[name].to(acc_dtype) for state, _ in items])
        scale = weights.to(acc_dtype).reshape(-1, *([1] * tensor.dim()))
        out[name] = _cast((stacked * scale).sum(0) / weights.sum(), tensor.dtype)
    return out


def median(states: Sequence[StateDict]) -> dict[str, torch.Tensor]:
    """The coordinate-wise median of ``states`` (unweighted; for an even count, the mean of the two middle values).

    Every tensor is ranked in ``float64`` and cast back as :func:`finalize` does (integers rounded).

    Raises:
        ValueError: ``states`` is empty, or the states do not have the same names and shapes.

    Example:
        >>> states = [{"w": torch.tensor([1.0, 9.0])}, {"w": torch.tensor([2.0, 0.0])}, {"w": torch.tensor([7.0, 1.0])}]
        >>> median(states)["w"]
        tensor([2., 1.])
    """
    return {name: _cast(_middle(ranked), states[0][name].dtype) for name, ranked in _sorted_stacks(states)}


def trimmed_mean(states: Sequence[StateDict], beta: float) -> dict[str, torch.Tensor]:
    """The coordinate-wise mean of ``states`` without the ``int(beta * K)`` lowest and highest values.

    Unweighted; ``beta=0`` gives the plain mean. Same dtype rules as :func:`median`.

    Args:
        states: The K states of the round.
        beta: The fraction cut at each end, ``0 <= beta < 0.5``.

    Raises:
        ValueError: ``beta`` out of range, ``states`` empty or not alike.

    Example:
        >>> states = [{"w": torch.tensor([v])} for v in (0.0, 1.0, 2.0, 100.0)]
        >>> trimmed_mean(states, beta=0.25)["w"]
        tensor([1.5000])
    """
    check_number("beta", beta, low=0.0, high=0.5, high_open=True)
    out: dict[str, torch.Tensor] = {}
    for name, ranked in _sorted_stacks(states):
        cut = int(beta * ranked.shape[0])
        out[name] = _cast(ranked[cut : ranked.shape[0] - cut].mean(0), states[0][name].dtype)
    return out


def _sorted_stacks(states: Sequence[StateDict]) -> Iterator[tuple[str, torch.Tensor]]:
    """For each tensor name, the K values of each coordinate sorted along a new first dimension (float64)."""
    for name, stacked in _stacks(states):
        yield name, torch.sort(stacked, dim=0).values


def _middle(ranked: torch.Tensor) -> torch.Tensor:
    """The median of values sorted along the first dimension: for an even count, the mean of the two middle ones."""
    count = ranked.shape[0]
    return ranked[count // 2] if count % 2 else (ranked[count // 2 - 1] + ranked[count // 2]) / 2


def _stacks(states: Sequence[StateDict]) -> Iterator[tuple[str, torch.Tensor]]:
    """For each tensor name, the K tensors stacked along a new first dimension (float64), one name at a time.

    Raises:
        ValueError: ``states`` is empty, the states do not have the same names and shapes, or one is complex.
    """
    if not states:
        raise ValueError("cannot aggregate zero states: `states` is empty")
    first = states[0]
    for state in states[1:]:
        _check_names(first, state)
    for name, tensor in first.items():
        if tensor.is_complex():
            raise ValueError(f"`{name}` is complex: the robust aggregates rank and compare real tensors only")
        for state in states[1:]:
            if state[name].shape != tensor.shape:
                raise ValueError(f"`{name}` has shape {tuple(state[name].shape)}, expected {tuple(tensor.shape)}")
        yield name, torch.stack([state[name].to(device=tensor.device, dtype=torch.float64) for state in states])


def _cast(mean: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.bool:
        return mean.real >= 0.5
    if dtype.is_floating_point or dtype.is_complex:
        return mean.to(dtype)
    return torch.round(mean.real).to(dtype)


def _check_names(expected: Mapping[str, torch.Tensor], state: StateDict) -> None:
    if len(expected) == len(state) and all(name in state for name in expected):
        return
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    raise ValueError(
        f"the state does not match the model: missing {missing or 'nothing'}, unexpected {unexpected or 'nothing'}"
    )
