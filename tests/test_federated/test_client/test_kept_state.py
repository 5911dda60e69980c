"""State a client keeps between its fits: its optimizer's (keep_optimizer_state) and its local weights (local_keys)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning
import pytest
import torch
from lightning.pytorch.callbacks import Callback as LightningCallback
from torch.utils.data import DataLoader, Subset

from federated import MLP, ClientUpdate, FedAvg, FederatedTrainer
from federated.client.trainer_args import CLIENT_TRAINER_DEFAULTS


class MomentumProbe(LightningCallback):
    """Records, per fit, the first parameter's momentum buffer at the start and at the end, and the LR."""

    def __init__(self) -> None:
        self.fits: list[dict[str, Any]] = []

    def on_train_start(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        optimizer = trainer.optimizers[0]
        state = optimizer.state.get(optimizer.param_groups[0]["params"][0], {})
        buffer = state.get("momentum_buffer")
        self.fits.append({"start": None if buffer is None else buffer.clone(), "lr": optimizer.param_groups[0]["lr"]})

    def on_train_end(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        optimizer = trainer.optimizers[0]
        self.fits[-1]["end"] = optimizer.state[optimizer.param_groups[0]["params"][0]]["momentum_buffer"].clone()


def test_an_sgd_momentum_clients_second_fit_starts_from_its_first_fits_buffer(
    digits4: Any, make_model: Callable[..., MLP]
) -> None:
    probe = MomentumProbe()
    one_client = [digits4[0][0]]
    fed = FederatedTrainer(
        make_model(momentum=0.9), one_client, rounds=3, keep_optimizer_state=True,
        trainer_kwargs={"callbacks": [probe]}, seed=0,
    )
    fed.fit()

    first, second, third = probe.fits
    assert first["start"] is None
    assert torch.equal(second["start"], first["end"]) and torch.equal(third["start"], second["end"])
    assert [f["lr"] for f in probe.fits] == [0.1, 0.1, 0.1]  # the module's rate, not compounded


def test_without_keep_optimizer_state_each_fit_starts_without_momentum(
    digits4: Any, make_model: Callable[..., MLP]
) -> None:
    probe = MomentumProbe()
    fed = FederatedTrainer(
        make_model(momentum=0.9), [digits4[0][0]], rounds=2, trainer_kwargs={"callbacks": [probe]}, seed=0
    )
    fed.fit()

    assert [f["start"] for f in probe.fits] == [None, None]
    assert fed.clients[0].state_dict() == {}


def test_kept_optimizer_state_is_exact_across_a_kill_and_resume(
    digits4: Any, make_model: Callable[..., MLP], tmp_path: Path
) -> None:
    loaders = digits4[0]

    def federation(rounds: int, checkpoint_dir: Path | None = None) -> FederatedTrainer:
        return FederatedTrainer(
            make_model(momentum=0.9), loaders, rounds=rounds, clients_per_round=2, keep_optimizer_state=True,
            checkpoint_dir=checkpoint_dir, seed=3,
        )

    straight = federation(4).fit()
    federation(2, tmp_path).fit()  # the process "dies" after round 2: only its checkpoint is left
    resumed = federation(4, tmp_path).fit(resume_from="auto")

    assert all(torch.equal(resumed.weights[k], straight.weights[k]) for k in straight.weights)
    assert [r.metrics for r in resumed.history] == [r.metrics for r in straight.history]
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert all("optimizer" in state for state in checkpoint["clients"].values())


class RecordingFedAvg(FedAvg):
    """FedAvg that records the names of every tensor it is handed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen: set[str] = set()

    def begin_round(self, round_num: int, weights: Any) -> None:
        self.seen |= set(weights)
        super().begin_round(round_num, weights)

    def accumulate(self, update: ClientUpdate) -> None:
        assert update.weights is not None
        self.seen |= set(update.weights)
        super().accumulate(update)


LOCAL = "net.0.bias"


def test_local_keys_never_leave_their_client_and_differ_per_client(
    digits4: Any, make_model: Callable[..., MLP]
) -> None:
    pairs = [
        (DataLoader(Subset(dl.dataset, range(60, len(dl.dataset))), batch_size=64, shuffle=True),  # type: ignore[arg-type]
         DataLoader(Subset(dl.dataset, range(60)), batch_size=64))
        for dl in digits4[0]
    ]
    initial = make_model().state_dict()[LOCAL].clone()
    strategy = RecordingFedAvg(local_keys=["net.0.b*"])
    fed = FederatedTrainer(make_model(), pairs, rounds=2, strategy=strategy, evaluate_clients=1.0, seed=0)
    result = fed.fit()

    assert LOCAL not in strategy.seen and "net.0.weight" in strategy.seen
    assert torch.equal(result.weights[LOCAL], initial)  # the global model keeps its initial values
    personal = [c.local_weights[LOCAL] for c in fed.clients]
    assert all(not torch.equal(a, b) for i, a in enumerate(personal) for b in personal[i + 1 :])
    assert all(u.weights is None or LOCAL not in u.weights for r in result.history for u in r.updates)

    validator = lightning.Trainer(**CLIENT_TRAINER_DEFAULTS)  # each client evaluates its personal model
    for client, evaluation in zip(fed.clients, result.history[-1].evaluations, strict=True):
        model = make_model()
        model.load_state_dict({**result.weights, **client.local_weights})
        (out,) = validator.validate(model, dataloaders=client.val_data, verbose=False)
        assert evaluation.metrics["accuracy"] == pytest.approx(out["accuracy"], abs=1e-6)


def test_local_keys_must_be_patterns() -> None:
    with pytest.raises(ValueError, match=r"`local_keys`: must be a list of glob patterns"):
        FedAvg(local_keys="*bn*")


class SlowData(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """A client's data served at ``delay`` seconds a sample: a straggler."""

    def __init__(self, base: Any, delay: float) -> None:
        self.base, self.delay = base, delay

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> Any:
        time.sleep(self.delay)
        return self.base[index]


def test_sequential_deadline_fails_the_late_fit_keeps_its_old_state_and_skips_the_rest(
    digits4: Any, make_model: Callable[..., MLP]
) -> None:
    loaders = digits4[0]
    slow = DataLoader(SlowData(loaders[1].dataset, delay=0.01), batch_size=64, shuffle=True)  # ~3.6 s a fit
    fed = FederatedTrainer(
        make_model(momentum=0.9), [loaders[0], slow, loaders[2], loaders[3]], rounds=1, keep_optimizer_state=True,
        round_timeout=1.0, seed=0,
    )
    result = fed.fit()

    (last,) = result.history
    assert [u.client_id for u in last.updates] == [0]
    assert [(f.client_id, f.error) for f in last.failures] == [
        (1, "did not return within the round's deadline (round_timeout=1 s)"),
        (2, "was not started within the round's deadline (round_timeout=1 s)"),
        (3, "was not started within the round's deadline (round_timeout=1 s)"),
    ]
    assert fed.clients[0].optimizer_state is not None
    assert fed.clients[1].optimizer_state is None  # the late fit's state is dropped with its result
