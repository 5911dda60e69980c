"""The metrics helpers: floats, the first optimizer's learning rate, the mean of step losses."""

from __future__ import annotations

import torch

from lightning_bridge.metrics import StepLosses, first_lr


def sgd(lr: float) -> torch.optim.SGD:
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)


def test_first_lr_reads_the_first_group_of_the_first_optimizer():
    # Prepare
    first = sgd(0.1)
    first.add_param_group({"params": [torch.zeros(1, requires_grad=True)], "lr": 0.5})

    # Assert
    assert first_lr([first, sgd(0.2)]) == 0.1
    assert first_lr([]) is None


def test_step_losses_add_tensors_and_mappings_and_pass_the_rest_through():
    # Prepare
    losses = StepLosses()
    graph_loss = torch.tensor(1.0, requires_grad=True) * 2

    # Execute
    returned = [
        losses.add(graph_loss),
        losses.add({"loss": torch.tensor(4.0)}),
        losses.add({"log": 1.0}),
        losses.add(None),
    ]

    # Assert: the graph's loss comes back detached; outputs without a tensor loss add nothing
    assert not returned[0].requires_grad and returned[0].item() == 2.0
    assert returned[2:] == [None, None]
    assert losses.count == 2
    assert losses.mean().item() == 3.0


def test_step_losses_mean_is_none_before_the_first_loss():
    assert StepLosses().mean() is None
