"""FedAdam, FedYogi, FedAdagrad and FedAvgM against updates computed by hand on two coordinates.

Round 1 starts from ``w = [1, -2]`` with two clients, ``[2, -2]`` (1 sample) and ``[4, -1]``
(3 samples): the FedAvg mean is ``[3.5, -1.25]``, so ``delta = [2.5, 0.75]``. Round 2 has one
client at ``w1 + [1, 0]``: ``delta = [1, 0]``. The integer buffer ``n`` (5 -> 6 and 10) always takes
the rounded FedAvg value, ``(6 + 3 * 10) / 4 = 9``.
"""

from __future__ import annotations

from math import sqrt

import pytest
import torch

from federated import ClientUpdate
from federated.strategies.fedadagrad import FedAdagrad
from federated.strategies.fedadam import FedAdam
from federated.strategies.fedavgm import FedAvgM
from federated.strategies.fedyogi import FedYogi
from federated.strategies.strategy import Strategy

W0 = {"w": torch.tensor([1.0, -2.0]), "n": torch.tensor(5)}


def _round_one(strategy: Strategy) -> dict[str, torch.Tensor]:
    strategy.begin_round(1, W0)
    first = {"w": torch.tensor([2.0, -2.0]), "n": torch.tensor(6)}
    second = {"w": torch.tensor([4.0, -1.0]), "n": torch.tensor(10)}
    strategy.accumulate(ClientUpdate(client_id=0, num_samples=1, weights=first))
    strategy.accumulate(ClientUpdate(client_id=1, num_samples=3, weights=second))
    return strategy.finish_round()


def _round_two(strategy: Strategy, w1: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    strategy.begin_round(2, w1)
    moved = {"w": w1["w"] + torch.tensor([1.0, 0.0]), "n": torch.tensor(12)}
    strategy.accumulate(ClientUpdate(client_id=0, num_samples=2, weights=moved))
    return strategy.finish_round()


def _close(actual: torch.Tensor, expected: list[float]) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected), rtol=0, atol=1e-6)


def test_fedadam_two_rounds_by_hand() -> None:
    # Prepare: eta 0.1, beta_1 0.5, beta_2 0.75, tau 0.5
    fedadam = FedAdam(eta=0.1, beta_1=0.5, beta_2=0.75, tau=0.5)

    # Execute
    w1 = _round_one(fedadam)

    # Assert: m = 0.5 * delta = [1.25, 0.375]; v = 0.25 * delta**2 = [1.5625, 0.140625]
    _close(fedadam.m["w"], [1.25, 0.375])
    _close(fedadam.v["w"], [1.5625, 0.140625])
    _close(w1["w"], [1.0 + 0.1 * 1.25 / (1.25 + 0.5), -2.0 + 0.1 * 0.375 / (0.375 + 0.5)])
    assert w1["n"].dtype == torch.int64 and w1["n"].item() == 9
    assert w1["w"].dtype == torch.float32

    w2 = _round_two(fedadam, w1)
    # m = 0.5 * m + 0.5 * [1, 0] = [1.125, 0.1875]; v = 0.75 * v + 0.25 * [1, 0] = [1.421875, 0.10546875]
    _close(fedadam.m["w"], [1.125, 0.1875])
    _close(fedadam.v["w"], [1.421875, 0.10546875])
    expected = [
        w1["w"][0].item() + 0.1 * 1.125 / (sqrt(1.421875) + 0.5),
        w1["w"][1].item() + 0.1 * 0.1875 / (sqrt(0.10546875) + 0.5),
    ]
    _close(w2["w"], expected)
    assert w2["n"].item() == 12


def test_fedyogi_two_rounds_by_hand() -> None:
    fedyogi = FedYogi(eta=0.1, beta_1=0.5, beta_2=0.75, tau=0.5)

    w1 = _round_one(fedyogi)
    # v starts at 0: v - 0.25 * delta**2 * sign(0 - delta**2) = 0.25 * delta**2, as Adam's first step
    _close(fedyogi.v["w"], [1.5625, 0.140625])
    _close(w1["w"], [1.0 + 0.1 * 1.25 / (1.25 + 0.5), -2.0 + 0.1 * 0.375 / (0.375 + 0.5)])

    w2 = _round_two(fedyogi, w1)
    # coordinate 0: 1.5625 - 0.25 * 1 * sign(1.5625 - 1) = 1.3125; coordinate 1: delta 0 leaves v as it is
    _close(fedyogi.v["w"], [1.3125, 0.140625])
    _close(fedyogi.m["w"], [1.125, 0.1875])
    expected = [
        w1["w"][0].item() + 0.1 * 1.125 / (sqrt(1.3125) + 0.5),
        w1["w"][1].item() + 0.1 * 0.1875 / (sqrt(0.140625) + 0.5),
    ]
    _close(w2["w"], expected)


def test_fedadagrad_two_rounds_by_hand() -> None:
    fedadagrad = FedAdagrad(eta=0.1, tau=0.5)  # beta_1 = 0: m is the round's delta

    w1 = _round_one(fedadagrad)
    _close(fedadagrad.v["w"], [6.25, 0.5625])
    _close(w1["w"], [1.0 + 0.1 * 2.5 / (2.5 + 0.5), -2.0 + 0.1 * 0.75 / (0.75 + 0.5)])

    w2 = _round_two(fedadagrad, w1)
    # v sums the squares: [6.25 + 1, 0.5625 + 0]; m = [1, 0], so coordinate 1 stays
    _close(fedadagrad.v["w"], [7.25, 0.5625])
    _close(w2["w"], [w1["w"][0].item() + 0.1 * 1.0 / (sqrt(7.25) + 0.5), w1["w"][1].item()])
    assert w2["n"].item() == 12


def test_fedavgm_two_rounds_by_hand() -> None:
    fedavgm = FedAvgM(server_learning_rate=0.5, server_momentum=0.9)

    w1 = _round_one(fedavgm)
    # g = w - mean = [1 - 3.5, -2 + 1.25] = [-2.5, -0.75]; b = g; w1 = w0 - 0.5 * b
    _close(fedavgm.momentum["w"], [-2.5, -0.75])
    _close(w1["w"], [2.25, -1.625])
    assert w1["n"].item() == 9

    w2 = _round_two(fedavgm, w1)
    # g = [-1, 0]; b = 0.9 * [-2.5, -0.75] + [-1, 0] = [-3.25, -0.675]; w2 = w1 - 0.5 * b
    _close(fedavgm.momentum["w"], [-3.25, -0.675])
    _close(w2["w"], [2.25 + 1.625, -1.625 + 0.3375])


def test_fedavgm_defaults_are_fedavg() -> None:
    fedavgm = FedAvgM()

    w1 = _round_one(fedavgm)

    _close(w1["w"], [3.5, -1.25])
    assert fedavgm.momentum is None and fedavgm.state_dict() == {"momentum": {}}


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: FedAdam(eta=0.0), r"`eta`: must be a number in \(0, inf\), got 0"),
        (lambda: FedAdam(beta_1=1.0), r"`beta_1`: must be a number in \[0, 1\), got 1.0"),
        (lambda: FedYogi(beta_2=-0.1), r"`beta_2`: must be a number in \[0, 1\), got -0.1"),
        (lambda: FedAdagrad(tau=0.0), r"`tau`: must be a number in \(0, inf\), got 0.0; it keeps"),
        (lambda: FedAdam(eta=float("nan")), r"`eta`: must be a number in \(0, inf\), got nan"),
        (lambda: FedAvgM(server_momentum=1.0), r"`server_momentum`: must be a number in \[0, 1\)"),
        (lambda: FedAvgM(server_learning_rate=-1), r"`server_learning_rate`: must be a number in \(0, inf\)"),
    ],
)
def test_server_optimizer_rejects_out_of_range_arguments(make: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()  # type: ignore[operator]
