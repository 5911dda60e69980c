"""``Trainer.fit(ckpt_path=<federation checkpoint>)``: fine-tuning centrally from a federation's model."""

from __future__ import annotations

import pytest
import torch
from bridge_helpers import QUIET, Seed000Recorder, TinyRegression, hooks, loader
from lightning.pytorch import Trainer

from callbacks import Callback
from federated import FederatedTrainer
from lightning_bridge import LightningCallbackAdapter


class StartProbe(Callback):
    """Keeps the weights, optimizer state and epoch the fit starts from."""

    def __init__(self) -> None:
        self.weights: dict[str, torch.Tensor] = {}
        self.optimizer_state: dict = {}

    def on_train_start(self, trainer, pl_module):
        self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        self.optimizer_state = dict(trainer.optimizers[0].state)


def test_fit_from_a_federation_checkpoint_starts_from_its_weights_with_a_fresh_optimizer(tmp_path):
    # Prepare: one round of a two-client federation of the same model
    FederatedTrainer(
        TinyRegression(), [loader(seed=2), loader(seed=3)], rounds=1, checkpoint_dir=tmp_path / "fed"
    ).fit()
    path = tmp_path / "fed" / "last.ckpt"
    federation = torch.load(path, weights_only=True)
    probe, recorder = StartProbe(), Seed000Recorder()
    adapter = LightningCallbackAdapter([probe, recorder], on_error="raise")
    trainer = Trainer(max_epochs=2, callbacks=[adapter], **QUIET)

    # Execute
    with pytest.warns(UserWarning, match=r"is a federation checkpoint \(round 1\): .*fresh optimizer") as caught:
        trainer.fit(TinyRegression(), loader(), loader(), ckpt_path=path)

    # Assert: the federation's global weights, a fresh optimizer, epochs from 0, said once
    assert probe.weights.keys() == federation["weights"].keys()
    assert all(torch.equal(probe.weights[k], federation["weights"][k]) for k in probe.weights)
    assert probe.optimizer_state == {}
    assert [e[1] for e in hooks(recorder.events, "on_epoch_start")] == [0, 1]
    assert len([w for w in caught if "federation checkpoint" in str(w.message)]) == 1
