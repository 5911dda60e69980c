"""Client callbacks: bridged into each client's Lightning fit, one copy per client, kept across rounds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from callbacks import Callback
from federated import MLP, FederatedTrainer


class EpochCounter(Callback):
    """A client-side callback (seed 000 style hooks) with state."""

    def __init__(self) -> None:
        self.epochs = 0
        self.batches = 0
        self.lrs: list[float] = []

    def state_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "batches": self.batches}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epochs, self.batches = state_dict["epochs"], state_dict["batches"]

    def on_batch_end(self, epoch: int, batch_idx: int) -> None:
        self.batches += 1

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.epochs += 1
        self.lrs.append(logs["lr"])


def test_each_client_keeps_its_own_callback_copies(digits4: Any, make_model: Callable[..., MLP]) -> None:
    # Prepare
    loaders, _ = digits4
    template = EpochCounter()
    fed = FederatedTrainer(
        make_model(), loaders[:3], rounds=3, local_epochs=2, client_callbacks=[template], on_error="raise"
    )
    # Execute
    fed.fit()
    # Assert: every client trained 3 rounds x 2 epochs with its own copy; the template is untouched
    copies = [client.callbacks[0] for client in fed.clients]
    assert len({id(c) for c in copies}) == 3 and all(c is not template for c in copies)
    assert [c.epochs for c in copies] == [6, 6, 6]
    batches = [len(dl) for dl in loaders[:3]]
    assert [c.batches for c in copies] == [6 * b for b in batches]
    assert template.epochs == 0
    assert fed.clients[0].state_dict() == {"callbacks": {"EpochCounter": {"epochs": 6, "batches": 6 * batches[0]}}}


def test_client_lr_scale_reaches_the_client_callbacks(digits4: Any, make_model: Callable[..., MLP]) -> None:
    class Halve(Callback):
        def on_round_start(self, trainer: Any, round_num: int) -> None:
            trainer.client_lr_scale = 0.5**round_num

    loaders, _ = digits4
    fed = FederatedTrainer(
        make_model(lr=0.4), loaders[:1], rounds=2, callbacks=[Halve()], client_callbacks=[EpochCounter()],
        on_error="raise",
    )
    fed.fit()
    assert fed.clients[0].callbacks[0].lrs == [0.2, 0.1]
    assert torch.isfinite(fed.global_weights["net.0.weight"]).all()
