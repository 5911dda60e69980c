"""RayBackend on a real local Ray (2 CPUs): sequential's weights, hooks in order, dead workers, the CLI."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import federated_helpers
import pytest
import torch
import yaml
from federated_helpers import AdaptiveSelection
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset, Subset

from callbacks import Callback
from federated import MLP, FedAvg, FederatedTrainer, FedProx, RayBackend, Scaffold, digits_federation
from federated.client import PrivateTraining
from federated.privacy import DifferentialPrivacyClientSideAdaptiveClipping

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

# the workers unpickle this module's classes by value: pytest imports it under a name they cannot import;
# so are the federated tests' helpers, which are not on the workers' path
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
ray.cloudpickle.register_pickle_by_value(federated_helpers)


@pytest.fixture(scope="module")
def digits6() -> tuple[list[DataLoader], DataLoader]:
    return digits_federation(num_clients=6, partition="dirichlet", alpha=0.5, batch_size=32, seed=0)


def make_model(**kwargs: Any) -> MLP:
    torch.manual_seed(0)
    return MLP(**{"hidden": 16, **kwargs})  # type: ignore[arg-type]


class FitCounter(Callback):
    """A client callback with state: its fits and batches, which must follow the client from worker to worker."""

    def __init__(self) -> None:
        self.fits = 0
        self.batches = 0

    def state_dict(self) -> dict[str, Any]:
        return {"fits": self.fits, "batches": self.batches}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.fits, self.batches = state_dict["fits"], state_dict["batches"]

    def on_train_start(self) -> None:
        self.fits += 1

    def on_batch_end(self, epoch: int, batch_idx: int) -> None:
        self.batches += 1


class HookRecorder(Callback):
    """Learner and aggregate hooks as the server sees them."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_round_start(self, round_num: int) -> None:
        self.events.append(("round_start", round_num))

    def on_epoch_start(self, learner: Any, epoch: int) -> None:
        self.events.append(("epoch_start", learner.client_id, epoch))

    def on_epoch_end(self, learner: Any, epoch: int, metrics: dict[str, float]) -> None:
        self.events.append(("epoch_end", learner.client_id, epoch, round(metrics["train_loss"], 6)))

    def on_aggregate_start(self, updates: list[Any]) -> None:
        self.events.append(("aggregate_start", [u.client_id for u in updates]))


def federation(loaders: list[DataLoader], test: DataLoader | None, backend: Any, **kwargs: Any) -> FederatedTrainer:
    return FederatedTrainer(make_model(), loaders, test, seed=3, backend=backend, on_error="raise", **kwargs)


ALGORITHMS = {
    "fedprox": lambda: {"strategy": FedProx(mu=0.1)},
    "scaffold": lambda: {"strategy": Scaffold()},
    "dp_sgd": lambda: {"client_algorithms": [PrivateTraining(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5)]},
    "client_dp": lambda: {
        "strategy": DifferentialPrivacyClientSideAdaptiveClipping(
            FedAvg(weighted=False), 0.5, clipped_count_stddev=1.0, delta=1e-3
        )
    },
}
"""The client algorithms each case runs, as ``FederatedTrainer`` arguments (client_dp: DP-FedAvg clipped on the
clients, its norm adapting, its noise drawn on the server, its account kept)."""


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_ray_backend_gives_the_sequential_weights_also_across_a_resume(
    digits6: Any, tmp_path: Path, algorithm: str
) -> None:
    # Prepare: a client algorithm in every fit (SCAFFOLD's: a payload per client, a variate kept per client;
    # DP-SGD's: noise and Poisson draws, an account kept per client), stateful client callbacks, server-side draws
    loaders, test = digits6

    def federation_of(backend: Any, rounds: int) -> FederatedTrainer:
        return federation(
            loaders, test, backend, rounds=rounds, clients_per_round=4, local_epochs=2, **ALGORITHMS[algorithm](),
            callbacks=[AdaptiveSelection()], client_callbacks=[FitCounter()],
            checkpoint_dir=tmp_path / ("seq" if backend == "sequential" else "ray"),
        )

    seq_fed = federation_of("sequential", rounds=2)
    seq = seq_fed.fit()
    # Execute: 1 round on Ray, stop; a new federation resumes from the checkpoint for round 2, on Ray
    federation_of(RayBackend(num_workers=2, clients_per_call=2), rounds=1).fit()
    ray_fed = federation_of(RayBackend(num_workers=2), rounds=2)
    par = ray_fed.fit(resume_from="auto")
    # Assert: the very same weights, selections, metrics and client callback states
    assert all(torch.equal(seq.weights[k], par.weights[k]) for k in seq.weights)
    assert [r.selected for r in par.history] == [r.selected for r in seq.history]
    assert [r.metrics for r in par.history] == [r.metrics for r in seq.history]
    torch.testing.assert_close(
        [c.state_dict() for c in ray_fed.clients], [c.state_dict() for c in seq_fed.clients], rtol=0, atol=0
    )
    torch.testing.assert_close(ray_fed.strategy.state_dict(), seq_fed.strategy.state_dict(), rtol=0, atol=0)
    fits = [c.state_dict().get("callbacks", {}).get("FitCounter", {}).get("fits", 0) for c in ray_fed.clients]
    assert sum(fits) == 2 * 4
    assert not ray_fed.backend._started_ray and ray.is_initialized()  # Ray was running: left running


class Uneven(Dataset):
    """A client's data, repeated ``times`` over: big clients train for longer than small ones."""

    def __init__(self, base: Dataset, times: int) -> None:
        self.base, self.times = base, times

    def __len__(self) -> int:
        return len(self.base) * self.times  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        return self.base[index % len(self.base)]  # type: ignore[arg-type]


def test_learner_hooks_reach_the_server_in_sampled_order(digits6: Any) -> None:
    # Prepare: client 0 trains far longer than the others, which finish first on the other worker
    loaders, _ = digits6
    data = [DataLoader(Uneven(dl.dataset, 12 if i == 0 else 1), batch_size=32) for i, dl in enumerate(loaders)]

    def run(backend: Any) -> list[tuple[Any, ...]]:
        recorder = HookRecorder()
        federation(data, None, backend, rounds=1, local_epochs=2, callbacks=[recorder]).fit()
        return recorder.events

    # Execute
    seq = run("sequential")
    par = run(RayBackend(num_workers=2, clients_per_call=1))
    # Assert: each client's epochs in the sampled order (0..5), then the aggregate; as sequential
    expected_ids = [e[1] for e in seq if e[0] == "epoch_start"]
    assert expected_ids == [c for c in range(6) for _ in range(2)]
    assert par == seq


class KillSwitch(Dataset):
    """Data whose reading ends the worker process (``os._exit``) while ``switch`` exists."""

    def __init__(self, base: Dataset, switch: str) -> None:
        self.base, self.switch = base, switch

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        if os.path.exists(self.switch):
            os._exit(1)
        return self.base[index]


class Disarm(Callback):
    """Removes the kill switch at the end of round 1, and records which workers trained each round."""

    def __init__(self, switch: str) -> None:
        self.switch = switch
        self.pids: list[set[int]] = []

    def on_round_end(self, round_num: int, result: Any) -> None:
        self.pids.append({round(u.metrics["pid"]) for u in result.updates})
        if round_num == 1:
            os.remove(self.switch)


class PidMLP(MLP):
    """Logs the id of the process that trains it."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.log("pid", float(os.getpid()), on_step=False, on_epoch=True)
        return super().training_step(batch, batch_idx)


def test_a_dead_worker_is_a_client_failure_and_the_pool_recovers(digits6: Any, tmp_path: Path) -> None:
    # Prepare: client 2 kills its worker in round 1; about 3 clients per call, so others share its call
    loaders, test = digits6
    switch = tmp_path / "kill"
    switch.touch()
    data = list(loaders)
    data[2] = DataLoader(KillSwitch(loaders[2].dataset, str(switch)), batch_size=32)
    disarm = Disarm(str(switch))
    backend = RayBackend(num_workers=2, clients_per_call=3)
    torch.manual_seed(0)
    fed = FederatedTrainer(PidMLP(hidden=16), data, test, rounds=2, seed=3, backend=backend, callbacks=[disarm])
    # Execute
    result = fed.fit()
    # Assert: round 1 lost client 2 only (those trained before it in its call count, those after it trained again)
    first = result.history[0]
    assert [f.client_id for f in first.failures] == [2]
    assert first.failures[0].error.startswith("the Ray worker died")
    assert [u.client_id for u in first.updates] == [0, 1, 3, 4, 5]
    assert len(result.history[1].updates) == 6
    # the dead worker was replaced: round 2 ran on two live workers, at least one of them new
    assert len(disarm.pids[-1]) == 2 and disarm.pids[-1] != disarm.pids[0]
    assert all(torch.isfinite(t).all() for t in result.weights.values())


def test_workers_cannot_hang_on_device_probing_and_stay_quiet(digits6: Any) -> None:
    # Prepare
    loaders, _ = digits6
    fed = federation(loaders, None, RayBackend(num_workers=1), rounds=1)
    fed.backend.start(fed._fit_setup())
    try:
        # Execute: read each worker's environment and the trainer arguments it got
        names = ("PL_DISABLE_FORK", "PYTORCH_NVML_BASED_CUDA_CHECK", "CUDA_VISIBLE_DEVICES")
        probe = fed.backend._workers[0].__ray_call__.remote(
            lambda worker: (
                {k: os.environ.get(k) for k in names},
                {k: worker.runner.trainer_kwargs[k] for k in ("accelerator", "devices")},
                torch.get_num_threads(),
                logging.getLogger("lightning.pytorch").getEffectiveLevel(),
            )
        )
        env, kwargs, threads, level = ray.get(probe)
    finally:
        fed.backend.stop()
    # Assert: set before Lightning was imported, and no "auto" accelerator
    assert env == {"PL_DISABLE_FORK": "1", "PYTORCH_NVML_BASED_CUDA_CHECK": "1", "CUDA_VISIBLE_DEVICES": ""}
    assert kwargs == {"accelerator": "cpu", "devices": 1} and threads == 1
    assert level == logging.WARNING  # Lightning's per-fit info lines stay out of the workers' logs


def test_trainer_arguments_a_worker_cannot_honour_are_refused(digits6: Any) -> None:
    loaders, _ = digits6
    with pytest.raises(ValueError, match=r"accelerator`: 'gpu', but a Ray worker with num_gpus_per_client=0.*set `num"):
        federation(loaders, None, RayBackend(num_workers=1), rounds=1, trainer_kwargs={"accelerator": "gpu"})
    with pytest.raises(ValueError, match=r"devices`: 2, but a Ray worker trains one client on one device"):
        federation(loaders, None, RayBackend(num_workers=1), rounds=1, trainer_kwargs={"devices": 2})
    fed = federation(loaders, None, RayBackend(num_workers=3), rounds=1)
    with pytest.raises(ValueError, match=r"need 3 CPUs; the Ray cluster has 2\. HINT: lower `num_workers`"):
        fed.fit()


def test_cli_runs_a_federation_on_ray_and_refuses_a_bad_backend_argument(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lightning_bridge.fed import main

    # Prepare
    config = {
        "seed": 0, "rounds": 1, "threads": 1, "output_dir": str(tmp_path / "out"),
        "data": {"type": "digits", "num_clients": 4, "batch_size": 64},
        "model": {"type": "mlp", "args": {"hidden": 16}},
        "clients": {"per_round": 4},
        "backend": {"type": "ray", "args": {"num_workers": 2, "num_cpus_per_client": 1, "num_gpus_per_client": 0,
                                            "address": None}},
    }
    good = tmp_path / "fed.yaml"
    good.write_text(yaml.safe_dump(config))
    config["backend"]["args"]["num_worker"] = 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    # Execute and Assert: the good one trains on Ray; the bad one exits 2 with one line
    assert main(["--config", str(good)]) == 0
    assert (tmp_path / "out" / "final_weights.pt").is_file()
    capsys.readouterr()
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "backend.args.num_worker: unknown argument `num_worker` (did you mean `num_workers`?)" in err


def with_validation(loaders: list[DataLoader], share: float = 0.25) -> list[tuple[DataLoader, DataLoader]]:
    """Each client's loader split into (train, val): its first ``share`` of samples validate."""
    pairs = []
    for loader in loaders:
        dataset = loader.dataset
        cut = int(len(dataset) * share)  # type: ignore[arg-type]
        train = Subset(dataset, range(cut, len(dataset)))  # type: ignore[arg-type]
        pairs.append((DataLoader(train, batch_size=32, shuffle=True), DataLoader(Subset(dataset, range(cut)))))
    return pairs


def test_ray_evaluates_on_clients_and_keeps_their_state_as_the_sequential_backend(digits6: Any) -> None:
    pairs = with_validation(digits6[0])

    def run(backend: Any) -> tuple[FederatedTrainer, Any]:
        torch.manual_seed(0)
        fed = FederatedTrainer(
            MLP(hidden=16, momentum=0.9), pairs, rounds=2, clients_per_round=3, evaluate_clients=0.5,
            keep_optimizer_state=True, strategy=FedAvg(local_keys=["net.0.bias"]), backend=backend, seed=3,
            on_error="raise",
        )
        return fed, fed.fit()

    seq_fed, seq = run("sequential")
    ray_fed, par = run(RayBackend(num_workers=2))

    assert all(torch.equal(seq.weights[k], par.weights[k]) for k in seq.weights)
    assert [r.metrics for r in par.history] == [r.metrics for r in seq.history]
    assert [[e.to_dict() for e in r.evaluations] for r in par.history] == [
        [e.to_dict() for e in r.evaluations] for r in seq.history
    ]
    assert any(r.evaluations for r in par.history) and "clients/accuracy" in par.metrics
    for on_ray, in_process in zip(ray_fed.clients, seq_fed.clients, strict=True):
        assert on_ray.local_weights.keys() == in_process.local_weights.keys()
        assert all(torch.equal(on_ray.local_weights[k], in_process.local_weights[k]) for k in on_ray.local_weights)
        assert (on_ray.optimizer_state is None) == (in_process.optimizer_state is None)
        if on_ray.optimizer_state is not None and in_process.optimizer_state is not None:
            ray_state = on_ray.optimizer_state["optimizers"][0]["state"]
            seq_state = in_process.optimizer_state["optimizers"][0]["state"]
            assert all(torch.equal(ray_state[i]["momentum_buffer"], seq_state[i]["momentum_buffer"]) for i in seq_state)


class Hang(Dataset):
    """A client's data that blocks while ``switch`` exists (at most ``_HANG_S``): a straggler past any deadline."""

    def __init__(self, base: Dataset, switch: str) -> None:
        self.base, self.switch = base, switch

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        until = time.monotonic() + _HANG_S
        while os.path.exists(self.switch) and time.monotonic() < until:
            time.sleep(0.05)
        return self.base[index]


_HANG_S = 120.0  # a bound on the straggler's wait, in case the deadline never killed its worker


def test_a_straggler_under_ray_fails_alone_and_its_worker_is_replaced(tmp_path: Path) -> None:
    # Prepare: 6 equal clients on 2 workers, 3 to a request: client 1 hangs in round 1, between client 0 (trained
    # before it on its worker) and client 2 (queued after it); clients 3-5 train on the other worker
    loaders, _ = digits_federation(num_clients=6, partition="iid", batch_size=64, seed=0)
    switch = tmp_path / "hang"
    switch.touch()
    data = list(loaders)
    data[1] = DataLoader(Hang(loaders[1].dataset, str(switch)), batch_size=64)
    disarm = Disarm(str(switch))
    torch.manual_seed(0)
    fed = FederatedTrainer(
        PidMLP(hidden=16), data, rounds=2, seed=3, backend=RayBackend(num_workers=2), callbacks=[disarm],
        round_timeout=10.0,
    )
    # Execute
    result = fed.fit()
    # Assert: round 1 kept client 0's finished update, failed client 1 as late and client 2 as not started
    first, second = result.history
    assert [u.client_id for u in first.updates] == [0, 3, 4, 5]
    assert [(f.client_id, f.error) for f in first.failures] == [
        (1, "did not return within the round's deadline (round_timeout=10 s)"),
        (2, "was not started within the round's deadline (round_timeout=10 s)"),
    ]
    # the straggler's worker was replaced: round 2 trained every client, on two live workers, one of them new
    assert [u.client_id for u in second.updates] == [0, 1, 2, 3, 4, 5] and not second.failures
    assert len(disarm.pids[1]) == 2 and disarm.pids[1] != disarm.pids[0]


def test_lightning_client_callbacks_and_loggers_on_ray_keep_the_sequential_states(
    digits6: Any, tmp_path: Path
) -> None:
    # Prepare: Lightning's EarlyStopping and a CSVLogger in every client fit, on both backends
    pairs = with_validation(digits6[0])[:3]

    def run(backend: Any, logs: Path) -> FederatedTrainer:
        torch.manual_seed(0)
        fed = FederatedTrainer(
            MLP(hidden=16), pairs, rounds=2, local_epochs=3, backend=backend, seed=0,
            client_callbacks=[EarlyStopping("val_loss", patience=0, min_delta=10.0)],
            client_loggers=[CSVLogger(logs)],
        )
        fed.fit()
        return fed

    # Execute
    in_process = run("sequential", tmp_path / "seq")
    on_ray = run(RayBackend(num_workers=2), tmp_path / "ray")
    # Assert: the callbacks' states and log steps came back from the workers as the sequential ones are
    for ray_client, seq_client in zip(on_ray.clients, in_process.clients, strict=True):
        ray_state, seq_state = ray_client.state_dict(), seq_client.state_dict()
        assert ray_state["logged_steps"] == seq_state["logged_steps"] > 0
        (key,) = seq_state["lightning_callbacks"]
        waits = [state["lightning_callbacks"][key]["wait_count"] for state in (ray_state, seq_state)]
        assert waits[0] == waits[1]
        assert (tmp_path / "ray" / "lightning_logs" / f"client_{ray_client.client_id}").is_dir()


class ExitingData(Dataset):
    """A client's data whose reading calls ``sys.exit(3)``."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> Any:
        sys.exit(3)


def test_sys_exit_in_a_client_on_ray_is_its_failure(digits6: Any) -> None:
    loaders, _ = digits6
    torch.manual_seed(0)
    fed = FederatedTrainer(
        MLP(hidden=16), [loaders[0], DataLoader(ExitingData(), batch_size=4)], rounds=1,
        backend=RayBackend(num_workers=1),
    )
    (failure,) = fed.fit().history[0].failures
    assert failure.client_id == 1 and failure.error.startswith("SystemExit: 3 (the client's code called sys.exit)")
