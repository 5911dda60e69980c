"""Streaming sample-weighted averaging against hand-computed means and the stacked formula."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from lightning.pytorch import LightningModule

from callbacks import resolve
from federated import ClientUpdate, FedAvg, FederatedTrainer
from federated.strategies.aggregate import accumulate, finalize, init_sum, weighted_average, weighted_average_reference


def test_weighted_average_equals_hand_computed_mean() -> None:
    # Prepare: three clients with 1, 2 and 5 samples
    states = [
        {"w": torch.tensor([1.0, 8.0]), "b": torch.tensor(0.0)},
        {"w": torch.tensor([4.0, 0.0]), "b": torch.tensor(4.0)},
        {"w": torch.tensor([1.0, 8.0]), "b": torch.tensor(8.0)},
    ]
    samples = [1, 2, 5]
    # Execute
    mean = weighted_average(zip(states, samples, strict=True))
    # Assert: (1*1 + 2*4 + 5*1) / 8 = 1.75, (8 + 0 + 40) / 8 = 6, (0 + 8 + 40) / 8 = 6
    assert torch.equal(mean["w"], torch.tensor([1.75, 6.0]))
    assert torch.equal(mean["b"], torch.tensor(6.0))


def test_weighted_average_matches_reference_formula() -> None:
    generator = torch.Generator().manual_seed(0)
    states = [
        {"a": torch.randn(7, 5, generator=generator), "b": torch.randn(3, generator=generator).double()}
        for _ in range(6)
    ]
    samples = [3, 1, 10, 7, 2, 5]
    streamed = weighted_average(zip(states, samples, strict=True))
    reference = weighted_average_reference(zip(states, samples, strict=True))
    for name in states[0]:
        assert streamed[name].dtype == states[0][name].dtype
        torch.testing.assert_close(streamed[name], reference[name], rtol=0, atol=1e-6)


def test_weighted_average_consumes_a_generator_one_state_at_a_time() -> None:
    alive: list[int] = []

    def updates():
        for i in range(5):
            alive.append(i)
            yield {"w": torch.full((2,), float(i))}, 1

    assert torch.equal(weighted_average(updates())["w"], torch.tensor([2.0, 2.0]))
    assert alive == [0, 1, 2, 3, 4]


def test_integer_and_bool_buffers_keep_their_dtype() -> None:
    states = [
        {"num_batches_tracked": torch.tensor(10), "mask": torch.tensor([True, False])},
        {"num_batches_tracked": torch.tensor(13), "mask": torch.tensor([True, True])},
    ]
    mean = weighted_average(zip(states, [1, 3], strict=True))
    assert mean["num_batches_tracked"].dtype == torch.int64
    assert mean["num_batches_tracked"].item() == 12  # (10 + 39) / 4 = 12.25, rounded
    assert mean["mask"].dtype == torch.bool
    assert mean["mask"].tolist() == [True, True]  # weighted majority


def test_accumulate_rejects_mismatched_states_and_weights() -> None:
    acc = init_sum({"w": torch.zeros(2)})
    with pytest.raises(ValueError, match="missing \\['w'\\]"):
        accumulate(acc, {"v": torch.zeros(2)}, 1)
    with pytest.raises(ValueError, match="shape"):
        accumulate(acc, {"w": torch.zeros(3)}, 1)
    with pytest.raises(ValueError, match=r"`num_samples`: must be a number in \(0, inf\), got 0.0"):
        accumulate(acc, {"w": torch.zeros(2)}, 0)
    with pytest.raises(ValueError, match="zero states"):
        finalize(acc)


def test_fedavg_weighted_and_uniform() -> None:
    updates = [
        ClientUpdate(client_id=0, num_samples=1, weights={"w": torch.tensor([0.0])}),
        ClientUpdate(client_id=1, num_samples=3, weights={"w": torch.tensor([4.0])}),
    ]
    for strategy, expected in ((FedAvg(), 3.0), (FedAvg(weighted=False), 2.0)):
        strategy.begin_round(1, {"w": torch.zeros(1)})
        for update in updates:
            strategy.accumulate(update)
        assert strategy.finish_round()["w"].item() == expected


def test_fedavg_is_registered_and_validates() -> None:
    assert resolve("strategy", "fedavg") is FedAvg
    with pytest.raises(ValueError, match="`accumulate_dtype` can be"):
        FedAvg(accumulate_dtype="float16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="without updates"):
        FedAvg().finish_round()


class BatchNormNet(LightningModule):
    """A model with integer buffers (BatchNorm's num_batches_tracked)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 10))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_round_loop_keeps_integer_buffers_integer(digits4: Any) -> None:
    # Prepare: two clients with different numbers of batches
    loaders, _ = digits4
    torch.manual_seed(0)
    model = BatchNormNet()
    batches = [len(loaders[0]), len(loaders[1])]
    # Execute
    result = FederatedTrainer(model, loaders[:2], rounds=2, clients_per_round=2).fit()
    # Assert: after 2 rounds each client has stepped 2 * its batches; the mean is rounded, dtype kept
    tracked = result.weights["net.1.num_batches_tracked"]
    assert tracked.dtype == torch.int64
    sizes = [len(dl.dataset) for dl in loaders[:2]]
    after_one = round(sum(n * b for n, b in zip(sizes, batches, strict=True)) / sum(sizes))
    assert tracked.item() == round(sum(n * (after_one + b) for n, b in zip(sizes, batches, strict=True)) / sum(sizes))
    assert torch.equal(model.net[1].num_batches_tracked, tracked)
