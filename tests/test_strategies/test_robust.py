"""FedMedian and FedTrimmedAvg against coordinate-wise medians and trimmed means worked out by hand."""

from __future__ import annotations

import pytest
import torch

from federated import ClientUpdate
from federated.strategies.fedmedian import FedMedian
from federated.strategies.fedtrimmedavg import FedTrimmedAvg
from federated.strategies.strategy import Strategy


def _aggregate(strategy: Strategy, columns: list[list[float]], counts: list[int]) -> dict[str, torch.Tensor]:
    """One round: client ``i`` sends ``w = columns[i]``, ``n = counts[i]``, and claims ``10**i`` samples."""
    strategy.begin_round(1, {"w": torch.zeros(len(columns[0])), "n": torch.tensor(0)})
    for i, (values, count) in enumerate(zip(columns, counts, strict=True)):
        weights = {"w": torch.tensor(values), "n": torch.tensor(count)}
        strategy.accumulate(ClientUpdate(client_id=i, num_samples=10**i, weights=weights))
    return strategy.finish_round()


def test_fedmedian_odd_count_by_hand() -> None:
    # Prepare: three clients; the last one is far off and claims 100 samples
    columns = [[1.0, 5.0, -1.0], [3.0, 4.0, -2.0], [1000.0, -1000.0, 7.0]]

    # Execute
    out = _aggregate(FedMedian(), columns, counts=[4, 6, 100])

    # Assert: the middle value of each coordinate, whatever the sample counts
    torch.testing.assert_close(out["w"], torch.tensor([3.0, 4.0, -1.0]))
    assert out["n"].dtype == torch.int64 and out["n"].item() == 6


def test_fedmedian_even_count_takes_the_mean_of_the_middle_two() -> None:
    columns = [[1.0, 0.0], [2.0, 10.0], [4.0, 20.0], [100.0, 30.0]]

    out = _aggregate(FedMedian(), columns, counts=[1, 2, 5, 9])

    # sorted columns: (1, 2, 4, 100) -> (2 + 4) / 2; (0, 10, 20, 30) -> 15; n: (2 + 5) / 2 = 3.5 -> round-half-even 4
    torch.testing.assert_close(out["w"], torch.tensor([3.0, 15.0]))
    assert out["n"].item() == 4


def test_fedtrimmedavg_cuts_int_beta_k_at_each_end() -> None:
    # five clients, beta 0.2: int(0.2 * 5) = 1 value cut at each end of each coordinate
    columns = [[0.0, 9.0], [1.0, -50.0], [2.0, 1.0], [3.0, 2.0], [500.0, 3.0]]

    out = _aggregate(FedTrimmedAvg(beta=0.2), columns, counts=[1, 2, 3, 4, 1000])

    # (0, 1, 2, 3, 500) -> (1 + 2 + 3) / 3 = 2; (-50, 1, 2, 3, 9) -> (1 + 2 + 3) / 3 = 2; n: (2 + 3 + 4) / 3 = 3
    torch.testing.assert_close(out["w"], torch.tensor([2.0, 2.0]))
    assert out["n"].item() == 3


def test_fedtrimmedavg_beta_below_one_client_is_the_plain_mean() -> None:
    # four clients, beta 0.2: int(0.8) = 0, nothing cut: the unweighted mean
    columns = [[0.0], [1.0], [2.0], [9.0]]

    out = _aggregate(FedTrimmedAvg(beta=0.2), columns, counts=[0, 0, 0, 0])

    torch.testing.assert_close(out["w"], torch.tensor([(0.0 + 1.0 + 2.0 + 9.0) / 4]))


def test_robust_strategies_keep_every_update_of_the_round() -> None:
    fedmedian = FedMedian()
    fedmedian.begin_round(1, {"w": torch.zeros(1)})
    for i in range(3):
        fedmedian.accumulate(ClientUpdate(client_id=i, num_samples=1, weights={"w": torch.tensor([float(i)])}))

    assert len(fedmedian._states) == 3
    fedmedian.finish_round()
    assert fedmedian._states == []


@pytest.mark.parametrize("beta", [-0.1, 0.5, 1.0, float("inf")])
def test_fedtrimmedavg_rejects_beta_out_of_range(beta: float) -> None:
    with pytest.raises(ValueError, match=r"`beta`: must be a number in \[0, 0.5\), got .*; it is the fraction cut"):
        FedTrimmedAvg(beta=beta)


def test_robust_strategy_refuses_to_finish_an_empty_round() -> None:
    fedmedian = FedMedian()
    fedmedian.begin_round(1, {"w": torch.zeros(1)})

    with pytest.raises(ValueError, match="FedMedian cannot finish a round without updates"):
        fedmedian.finish_round()
