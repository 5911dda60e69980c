"""DP-SGD with Opacus inside an ordinary ``lightning.Trainer``: private steps, their account, clean hooks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning
import pytest
import torch
from bridge_helpers import QUIET
from lightning.pytorch.callbacks import Callback as LightningCallback
from opacus.accountants import RDPAccountant
from opacus.data_loader import DPDataLoader
from torch.utils.data import DataLoader, TensorDataset

from callbacks import ArgumentError, Callback
from federated import MLP
from lightning_bridge import DPSGD, LightningCallbackAdapter


def digits_loader(samples: int = 256, batch_size: int = 32) -> DataLoader:
    """The first ``samples`` 8x8 digits of scikit-learn, scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    data = TensorDataset(torch.tensor(x[:samples] / 16.0, dtype=torch.float32), torch.tensor(y[:samples]))
    return DataLoader(data, batch_size=batch_size, shuffle=True)


def trainer(*callbacks: Any, **kwargs: Any) -> lightning.Trainer:
    return lightning.Trainer(**{**QUIET, "max_epochs": 1, **kwargs}, callbacks=list(callbacks))


class NativeLogs(Callback):
    """Records the ``logs`` each native ``on_epoch_end`` receives."""

    def __init__(self) -> None:
        self.logs: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.logs.append(dict(logs))


class TrainBatches(LightningCallback):
    """Records the train loader of each fit and the size of each training batch."""

    def __init__(self) -> None:
        self.loaders: list[Any] = []
        self.sizes: list[int] = []

    def on_train_start(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        self.loaders.append(trainer.train_dataloader)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.sizes.append(len(batch[1]))


def test_dp_sgd_trains_with_poisson_batches_and_its_account_is_opacus_rdp_accountants() -> None:
    # Prepare
    lightning.seed_everything(0)
    model, native, batches = MLP(hidden=16), NativeLogs(), TrainBatches()
    names = list(model.state_dict())
    dp = DPSGD(noise_multiplier=1.1, max_grad_norm=1.0, delta=1e-5)
    # Execute
    trainer(LightningCallbackAdapter([native]), dp, batches, max_epochs=2).fit(model, digits_loader())
    # Assert: Poisson batches over the module itself, 8 steps per epoch at the rate 1/8
    assert list(model.state_dict()) == names
    assert isinstance(batches.loaders[0], DPDataLoader) and len(set(batches.sizes)) > 1
    assert dp.history == [(1.1, 1 / 8, 16)]
    reference = RDPAccountant()
    for _ in range(16):
        reference.step(noise_multiplier=1.1, sample_rate=1 / 8)
    assert dp.epsilon == pytest.approx(reference.get_epsilon(1e-5), abs=1e-6)
    # the native callbacks see the account at each epoch's end, and the next epoch's preview
    first, second = native.logs
    after_one = RDPAccountant()
    after_one.history = [(1.1, 1 / 8, 8)]
    assert first["dp/epsilon"] == pytest.approx(after_one.get_epsilon(1e-5), abs=1e-5)
    assert first["dp/epsilon_next"] == pytest.approx(second["dp/epsilon"], abs=1e-5)
    assert second["dp/epsilon"] == pytest.approx(dp.epsilon, abs=1e-5)


def test_dp_sgd_clips_each_step_to_max_grad_norm() -> None:
    # Prepare: no noise, fixed batches of 32 out of 256 samples (the expected batch size), one step
    lightning.seed_everything(0)
    model = MLP(hidden=16, lr=0.1)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    dp = DPSGD(noise_multiplier=0.0, max_grad_norm=1e-3, delta=1e-5, poisson_sampling=False)
    # Execute
    trainer(dp, max_steps=1).fit(model, digits_loader())
    # Assert: the mean of 32 gradients each of norm at most 1e-3, times the rate
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    step = float((after - before).norm())
    assert 0 < step <= 0.1 * 1e-3 * (1 + 1e-4)
    assert dp.history == [(0.0, 1 / 8, 1)] and dp.epsilon == float("inf")


def test_dp_sgd_takes_its_hooks_off_so_the_module_trains_privately_again() -> None:
    # Prepare
    model = MLP(hidden=16)
    dp = DPSGD(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5)
    fit = trainer(dp)
    fit.fit(model, digits_loader())
    plain_optimizer = fit.optimizers[0]
    # Execute: a second fit of the same module, with the same callback
    trainer(dp).fit(model, digits_loader())
    # Assert: no "Trying to add hooks twice", no Opacus attributes left, the account goes on
    assert not hasattr(model, "autograd_grad_sample_hooks")
    assert not any(hasattr(p, "grad_sample") for p in model.parameters())
    assert type(plain_optimizer) is torch.optim.SGD
    assert dp.steps == 16


def test_dp_sgd_account_is_in_lightning_checkpoints(tmp_path: Path) -> None:
    # Prepare: one epoch, saved
    model = MLP(hidden=16)
    first = trainer(DPSGD(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5))
    first.fit(model, digits_loader())
    first.save_checkpoint(tmp_path / "one.ckpt")
    # Execute: a new callback resumes the fit for a second epoch
    dp = DPSGD(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5)
    trainer(dp, max_epochs=2).fit(MLP(hidden=16), digits_loader(), ckpt_path=tmp_path / "one.ckpt")
    # Assert
    assert dp.history == [(1.0, 1 / 8, 16)]


class Batches(LightningCallback):
    """Counts training batches."""

    def __init__(self) -> None:
        self.count = 0

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.count += 1


def test_dp_sgd_refuses_batch_norm_before_training() -> None:
    batches = Batches()
    with pytest.raises(ArgumentError) as raised:
        trainer(DPSGD(1.0, 1.0, 1e-5), batches).fit(MLP(hidden=16, batch_norm=True), digits_loader())
    message = str(raised.value)
    assert message.startswith("`model`: its layer `net.bn` (_BatchNorm1d) cannot train with DP-SGD (BatchNorm ")
    assert "replace it with nn.GroupNorm" in message and "\n" not in message
    assert batches.count == 0


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"noise_multiplier": -0.5}, "`noise_multiplier`: must be a number in [0, inf), got -0.5"),
        ({"max_grad_norm": 0}, "`max_grad_norm`: must be a number in (0, inf), got 0"),
        ({"delta": 1.0}, "`delta`: must be a number in (0, 1), got 1.0"),
        ({"delta": 0}, "`delta`: must be a number in (0, 1), got 0"),
        ({"poisson_sampling": "yes"}, "`poisson_sampling`: must be true or false, got 'yes'"),
    ],
)
def test_dp_sgd_refuses_bad_arguments_naming_them(kwargs: dict[str, Any], expected: str) -> None:
    arguments = {"noise_multiplier": 1.0, "max_grad_norm": 1.0, "delta": 1e-5, **kwargs}
    with pytest.raises(ArgumentError) as raised:
        DPSGD(**arguments)
    assert str(raised.value) == expected


class StopAtBatch(LightningCallback):
    """Asks the fit to stop at training batch ``batch``."""

    def __init__(self, batch: int) -> None:
        self.batch = batch

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx == self.batch:
            trainer.should_stop = True


def test_dp_sgd_reports_an_epoch_cut_short_and_samples_a_data_modules_loader() -> None:
    # Prepare: the train loader comes from a LightningDataModule; the first epoch stops after 3 batches
    from bridge_helpers import RegressionData, TinyRegression

    batches, dp = TrainBatches(), DPSGD(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5)
    fit = trainer(dp, StopAtBatch(2), batches, max_epochs=3)
    # Execute
    fit.fit(TinyRegression(), datamodule=RegressionData(samples=64, batch_size=8))
    # Assert
    assert isinstance(batches.loaders[0], DPDataLoader)
    assert dp.history == [(1.0, 1 / 8, 3)]
    assert float(fit.callback_metrics["dp/epsilon"]) == pytest.approx(dp.epsilon)


def test_dp_sgd_fit_repeats_exactly_under_seed_everything_whatever_the_loaders_generator() -> None:
    def fit(loader_seed: int) -> dict[str, torch.Tensor]:
        lightning.seed_everything(0)
        model = MLP(hidden=16)
        dataset = digits_loader().dataset
        loader = DataLoader(dataset, batch_size=32, generator=torch.Generator().manual_seed(loader_seed))
        trainer(DPSGD(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5)).fit(model, loader)
        return model.state_dict()

    first, second = fit(1), fit(2)
    assert all(torch.equal(first[k], second[k]) for k in first)
