"""The federation checkpoint file: clear, one-line errors for files that are damaged or foreign."""

from __future__ import annotations

import io
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Trainer

from callbacks import ModelCheckpoint
from federated import MLP, CheckpointError, FederatedTrainer
from federated.checkpoint import FORMAT, load_checkpoint


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory: pytest.TempPathFactory, digits4: Any) -> bytes:
    """The bytes of a real ``last.ckpt``, after one round of two clients."""
    loaders, test = digits4
    directory = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    FederatedTrainer(MLP(hidden=16), loaders, test, rounds=1, clients_per_round=2, checkpoint_dir=directory).fit()
    return (directory / "last.ckpt").read_bytes()


def load_error(path: Path) -> str:
    """The message of the CheckpointError that loading ``path`` raises; no warning may come before it."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
    assert [str(w.message) for w in seen] == []
    message = str(info.value)
    assert "\n" not in message and len(message) < 300, message
    assert repr(str(path)) in message
    return message


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_load_checkpoint_says_a_truncated_file_is_damaged(
    checkpoint_bytes: bytes, tmp_path: Path, fraction: float
) -> None:
    # Prepare
    path = tmp_path / "last.ckpt"
    path.write_bytes(checkpoint_bytes[: int(len(checkpoint_bytes) * fraction)])

    # Execute
    message = load_error(path)

    # Assert
    assert "is damaged: truncated, or not written by torch.save" in message
    assert "Errno" not in message


def test_load_checkpoint_refuses_garbage_without_unsafe_advice(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"not a checkpoint at all\n" * 40)

    message = load_error(path)

    assert "is damaged" in message and "weights_only" not in message


def test_load_checkpoint_names_the_object_it_refuses_to_load(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    torch.save({"format": FORMAT, "model": torch.nn.Linear(2, 2)}, path)

    message = load_error(path)

    assert "holds a `torch.nn.modules.linear.Linear` object" in message and "weights_only" not in message


@pytest.mark.parametrize(
    ("write", "says"),
    [
        (
            lambda p: torch.save({"format": "federated/0"}, p, pickle_protocol=4),
            "cannot be read with a weights-only load",
        ),
        (
            lambda p: torch.save({"format": "federated/0"}, p, pickle_protocol=4, _use_new_zipfile_serialization=False),
            "is damaged: truncated, or not written by torch.save",
        ),
        (lambda p: p.write_bytes(pickle.dumps({"format": FORMAT}, protocol=4)), "is damaged"),
    ],
    ids=["torch-protocol-4", "torch-legacy-format", "plain-pickle"],
)
def test_load_checkpoint_refuses_an_old_or_foreign_file_without_a_warning(
    tmp_path: Path, write: Callable[[Path], Any], says: str
) -> None:
    path = tmp_path / "old.ckpt"
    write(path)

    message = load_error(path)

    assert says in message and "weights_only=False" not in message


def test_load_checkpoint_refuses_another_format(tmp_path: Path) -> None:
    path = tmp_path / "old.ckpt"
    torch.save({"format": "federated/0", "round": 3}, path)

    message = load_error(path)

    assert "format 'federated/0'" in message


def test_load_checkpoint_refuses_a_lightning_training_checkpoint(digits4: Any, tmp_path: Path) -> None:
    # Prepare: a centralised fit's own checkpoint
    loaders, test = digits4
    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False)
    trainer.fit(MLP(hidden=8), loaders[0], test)
    path = tmp_path / "epoch=0.ckpt"
    trainer.save_checkpoint(path)

    # Execute
    message = load_error(path)

    # Assert
    assert "is not a federation checkpoint of this version (format None" in message


class Scaled(MLP):
    """A LightningModule with a hyper-parameter of its own, saved by ``save_hyperparameters``."""

    def __init__(self, scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * self.hparams.scale)


class WithActivation(MLP):
    """A hyper-parameter that is a function: a weights-only load cannot read it back."""

    def __init__(self, activation: Callable[..., torch.Tensor] = torch.relu, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()


def federate(model: MLP, digits4: Any, out: Path) -> dict[str, torch.Tensor]:
    """Three rounds with the loop's last.ckpt in ``out`` and ModelCheckpoint files in ``out/models``."""
    loaders, test = digits4
    models = ModelCheckpoint(save_dir=str(out / "models"), save_every=2, metric="accuracy")
    fed = FederatedTrainer(model, loaders, test, rounds=3, clients_per_round=2, checkpoint_dir=out, callbacks=[models])
    return fed.fit().weights


@pytest.mark.parametrize("name", ["last.ckpt", "models/best.ckpt", "models/round=0002.ckpt"])
def test_federation_checkpoint_loads_with_load_from_checkpoint(digits4: Any, tmp_path: Path, name: str) -> None:
    # Prepare
    torch.manual_seed(0)
    final = federate(MLP(hidden=24, lr=0.05), digits4, tmp_path)
    saved = torch.load(tmp_path / name, weights_only=True)

    # Execute
    model = MLP.load_from_checkpoint(tmp_path / name)

    # Assert: the hyper-parameters and the global weights of that round
    assert dict(model.hparams) == dict(MLP(hidden=24, lr=0.05).hparams)
    assert model.state_dict().keys() == saved["weights"].keys()
    assert all(torch.equal(model.state_dict()[k], saved["weights"][k]) for k in saved["weights"])
    if name == "last.ckpt":
        assert all(torch.equal(model.state_dict()[k], final[k]) for k in final)


def test_load_from_checkpoint_restores_the_modules_own_hyper_parameters(digits4: Any, tmp_path: Path) -> None:
    torch.manual_seed(0)
    federate(Scaled(scale=0.5, hidden=8), digits4, tmp_path)

    model = Scaled.load_from_checkpoint(tmp_path / "last.ckpt")

    assert model.hparams.scale == 0.5 and model.hparams.hidden == 8


def test_federation_checkpoint_stores_the_weights_once(digits4: Any, tmp_path: Path) -> None:
    # Prepare: a model whose weights outweigh everything else in the file
    torch.manual_seed(0)
    final = federate(MLP(hidden=512), digits4, tmp_path)
    weights_alone = io.BytesIO()
    torch.save(final, weights_alone)

    # Execute
    size = (tmp_path / "last.ckpt").stat().st_size

    # Assert
    assert size < 1.5 * len(weights_alone.getvalue())


def test_federation_checkpoint_leaves_out_hyper_parameters_a_weights_only_load_refuses(
    digits4: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    torch.manual_seed(0)
    federate(WithActivation(activation=torch.tanh, hidden=8), digits4, tmp_path)

    # Execute
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    model = WithActivation.load_from_checkpoint(tmp_path / "last.ckpt", activation=torch.tanh)

    # Assert
    assert "leave out the hyper-parameters activation of WithActivation" in caplog.text
    assert "activation" not in saved["hyper_parameters"] and saved["hyper_parameters"]["hidden"] == 8
    assert model.hparams.activation is torch.tanh


@pytest.mark.parametrize(
    ("contents", "expected"),
    [
        ({"round": 2}, "is not a whole federation checkpoint: it has no `weights`"),
        ({"round": "2"}, "is not a federation checkpoint: its `round` is a str"),
        ({"trainer": {"seed": 0}}, "is not a whole federation checkpoint: it has no `trainer.should_stop`"),
        ({"weights": {"w": [1.0]}}, "is not a federation checkpoint: its `round` or `weights` is not one"),
    ],
)
def test_load_checkpoint_names_a_hand_made_file_and_what_it_lacks(
    contents: dict[str, Any], expected: str, tmp_path: Path
) -> None:
    whole = {
        "round": 1, "weights": {"w": torch.zeros(1)}, "strategy": {}, "callbacks": {}, "clients": {}, "rng": {},
        "last_round": None, "trainer": {"should_stop": False, "client_lr_scale": 1.0, "seed": 0, "num_clients": 1},
    }
    path = tmp_path / "hand_made.ckpt"
    fields = contents if "round" in contents and len(contents) == 1 else {**whole, **contents}
    torch.save({"format": FORMAT, **fields}, path)

    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(path)

    assert str(raised.value) == f"{str(path)!r} {expected}"
