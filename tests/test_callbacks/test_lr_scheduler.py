"""LRScheduler: the server-side schedule of the round loop and the per-epoch one, against torch's own."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, ExponentialLR, MultiStepLR, ReduceLROnPlateau, StepLR

from callbacks import CallbackManager, LRScheduler

VAL_LOSSES = [1.0, 0.9, 0.95, 0.97, 0.8, 0.85, 0.86, 0.87, 0.7, 0.75]

# scheduler_type -> (LRScheduler arguments, the same schedule built directly with torch)
SCHEDULES = {
    "step": ({"step_size": 2, "gamma": 0.5}, lambda opt: StepLR(opt, step_size=2, gamma=0.5)),
    "multistep": ({"milestones": [2, 5], "gamma": 0.3}, lambda opt: MultiStepLR(opt, milestones=[2, 5], gamma=0.3)),
    "exponential": ({"gamma": 0.8}, lambda opt: ExponentialLR(opt, gamma=0.8)),
    "cosine": ({"T_max": 4, "eta_min": 0.1}, lambda opt: CosineAnnealingLR(opt, T_max=4, eta_min=0.1)),
    "plateau": (
        {"factor": 0.5, "patience": 0, "metric": "val_loss", "mode": "min"},
        lambda opt: ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=0),
    ),
}


def probe_optimizer(lr=1.0):
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)


def torch_sequence(kind, losses, lr=1.0):
    """The LR in use at each step of torch's own scheduler, stepped after its optimizer."""
    optimizer = probe_optimizer(lr)
    scheduler = SCHEDULES[kind][1](optimizer)
    lrs = []
    for loss in losses:
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step(loss) if kind == "plateau" else scheduler.step()
    return lrs


def run_rounds(manager, server, losses, first_round=1):
    """Return, per round, the scale the clients got and the `lr_scale` the round metrics report."""
    scales, reported = [], []
    for round_num, loss in enumerate(losses, start=first_round):
        manager.call("on_round_start", trainer=server, round_num=round_num)
        scales.append(server.client_lr_scale)
        result = SimpleNamespace(metrics={"val_loss": loss}, updates=[])
        manager.call("on_round_end", trainer=server, round_num=round_num, result=result)
        reported.append(result.metrics["lr_scale"])
    return scales, reported


@pytest.mark.parametrize("kind", list(SCHEDULES))
def test_lr_scheduler_federated_scale_follows_torch(kind):
    # Prepare
    scheduler = LRScheduler(scheduler_type=kind, **SCHEDULES[kind][0])
    manager, server = CallbackManager([scheduler], on_error="raise"), SimpleNamespace(should_stop=False)
    manager.call("on_train_start", trainer=server)

    # Execute
    scales, reported = run_rounds(manager, server, VAL_LOSSES)

    # Assert
    assert scales == pytest.approx(torch_sequence(kind, VAL_LOSSES))
    assert reported == scales
    assert len(set(scales)) > 1  # the schedule did move


@pytest.mark.parametrize("kind", list(SCHEDULES))
def test_lr_scheduler_federated_state_round_trip_continues_the_schedule(kind):
    # Prepare: one uninterrupted run, one stopped after 4 rounds and resumed in a new object
    arguments = SCHEDULES[kind][0]
    whole = LRScheduler(scheduler_type=kind, **arguments)
    whole_scales, _ = run_rounds(CallbackManager([whole], on_error="raise"), SimpleNamespace(), VAL_LOSSES)
    first = LRScheduler(scheduler_type=kind, **arguments)
    run_rounds(CallbackManager([first], on_error="raise"), SimpleNamespace(), VAL_LOSSES[:4])
    state = copy.deepcopy(first.state_dict())

    # Execute
    resumed = LRScheduler(scheduler_type=kind, **arguments)
    resumed.load_state_dict(state)
    manager = CallbackManager([resumed], on_error="raise")
    manager.call("on_train_start", trainer=SimpleNamespace())
    resumed_scales, _ = run_rounds(manager, SimpleNamespace(), VAL_LOSSES[4:], first_round=5)

    # Assert
    assert resumed_scales == pytest.approx(whole_scales[4:])


def test_lr_scheduler_steps_the_trainer_optimizers_each_epoch():
    # Prepare
    optimizer = probe_optimizer(lr=0.1)
    trainer = SimpleNamespace(optimizers=[optimizer], should_stop=False)
    manager = CallbackManager([LRScheduler(scheduler_type="step", step_size=2, gamma=0.5)], on_error="raise")
    manager.call("on_train_start", trainer=trainer)

    # Execute
    reported, in_use = [], []
    for epoch in range(5):
        in_use.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        logs = {"avg_loss": 1.0}
        manager.call("on_epoch_end", trainer=trainer, epoch=epoch, logs=logs)
        reported.append(logs["lr"])

    # Assert
    assert in_use == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    assert reported == in_use


def test_lr_scheduler_leaves_client_epochs_alone():
    # Prepare
    optimizer = probe_optimizer(lr=0.1)
    manager = CallbackManager([LRScheduler(scheduler_type="exponential", gamma=0.5)], on_error="raise")
    manager.call("on_train_start", trainer=SimpleNamespace(optimizers=[optimizer]))

    # Execute: a client's epoch in the round loop carries its round number
    manager.call("on_epoch_end", epoch=0, logs={}, metrics={}, learner="c0", round_num=1)

    # Assert
    assert optimizer.param_groups[0]["lr"] == 0.1


def test_lr_scheduler_epoch_state_round_trip_restores_the_lr():
    # Prepare
    first_opt = probe_optimizer(lr=0.1)
    first = LRScheduler(scheduler_type="cosine", T_max=6)
    manager = CallbackManager([first], on_error="raise")
    manager.call("on_train_start", trainer=SimpleNamespace(optimizers=[first_opt]))
    for epoch in range(3):
        first_opt.step()
        manager.call("on_epoch_end", epoch=epoch, logs={})

    # Execute: a new optimizer at its base LR, as a process restarted from scratch has
    resumed_opt = probe_optimizer(lr=0.1)
    resumed = LRScheduler(scheduler_type="cosine", T_max=6)
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    resumed_manager = CallbackManager([resumed], on_error="raise")
    resumed_manager.call("on_train_start", trainer=SimpleNamespace(optimizers=[resumed_opt]))

    # Assert
    assert resumed_opt.param_groups[0]["lr"] == pytest.approx(first_opt.param_groups[0]["lr"])
    assert resumed_opt.param_groups[0]["lr"] < 0.1


def test_lr_scheduler_refuses_a_state_for_another_number_of_optimizers():
    # Prepare
    saved = LRScheduler()
    saved.on_train_start(SimpleNamespace(optimizers=[probe_optimizer(), probe_optimizer()]))
    resumed = LRScheduler()
    resumed.load_state_dict(saved.state_dict())

    # Execute / Assert
    with pytest.raises(ValueError, match="holds 2 schedulers, but there are 1 optimizers"):
        resumed.on_train_start(SimpleNamespace(optimizers=[probe_optimizer()]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scheduler_type": "cosin"}, "`scheduler_type` can be step, multistep, exponential, cosine, plateau"),
        ({"mode": "up"}, "`mode` can be 'min' or 'max', got 'up'"),
    ],
)
def test_lr_scheduler_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LRScheduler(**kwargs)
