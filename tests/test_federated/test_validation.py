"""Constructor arguments are checked at once, with one line naming the parameter and what is allowed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from lightning.pytorch import LightningModule
from torch.utils.data import DataLoader, TensorDataset

from callbacks import Callback, ConfigError
from federated import MLP, FederatedTrainer


class NoValidation(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(64, 10)


class SameKey(Callback):
    def state_dict(self) -> dict[str, Any]:
        return {}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rounds": 0}, ValueError, r"`rounds`: must be an int in \[1, inf\), got 0"),
        ({"clients_per_round": 5}, ValueError, r"`clients_per_round`: must be an int in \[1, 4\] \(there are 4 "),
        ({"clients_per_round": 1.5}, ValueError, r"`clients_per_round`: must be a number in \(0, 1\], got 1.5"),
        ({"clients_per_round": 2, "min_clients": 3}, ValueError, r"`min_clients`: must be an int in \[1, 2\]: 3 is"),
        ({"local_epochs": 0}, ValueError, r"`local_epochs`: must be an int in \[1, inf\), got 0"),
        ({"seed": -1}, ValueError, r"`seed`: must be an int in \[0, 4294967295\], got -1"),
        ({"seed": 2**32}, ValueError, r"`seed`: must be an int in \[0, 4294967295\], got 4294967296"),
        ({"strategy": "fedavgg"}, ConfigError, r"unknown strategy type 'fedavgg' \(did you mean `fedavg`\?\)"),
        ({"trainer_kwargs": {"max_epochs": 3}}, ValueError, r"`trainer_kwargs.max_epochs`: is set by the federation"),
        ({"trainer_kwargs": {"max_epoch": 3}}, ValueError, r"`max_epoch`.*did you mean `max_epochs`"),
        ({"on_error": "ignore"}, ValueError, r"`on_error`: can be 'warn' or 'raise', got 'ignore'"),
        ({"callbacks": [SameKey(), SameKey()]}, ValueError, r"`callbacks`: two callbacks share the state key 'Same"),
        ({"callbacks": [{"type": "early_stoping"}]}, ConfigError, r"callbacks\[0\]\.type.*`early_stopping`"),
    ],
)
def test_bad_arguments_fail_at_construction(
    digits4: Any, make_model: Callable[..., MLP], kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    loaders, _ = digits4
    with pytest.raises(error, match=match):
        FederatedTrainer(make_model(), loaders, **kwargs)


def test_bad_model_and_data_fail_at_construction(digits4: Any, make_model: Callable[..., MLP]) -> None:
    loaders, test = digits4
    with pytest.raises(TypeError, match=r"`model` must be a lightning\.LightningModule, got Linear"):
        FederatedTrainer(torch.nn.Linear(2, 2), loaders)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`model`: NoValidation has no `validation_step`"):
        FederatedTrainer(NoValidation(), loaders, test)
    with pytest.raises(ValueError, match="`client_data`: must be a non-empty list"):
        FederatedTrainer(make_model(), loaders[0])  # type: ignore[arg-type]
    every_form = r"a DataLoader, a Dataset, a \(train, val\) pair of them, or a LightningDataModule \(lightning"
    with pytest.raises(TypeError, match=rf"`client_data\[1\]` must be {every_form}.*, got list"):
        FederatedTrainer(make_model(), [loaders[0], [1, 2]])
    empty = DataLoader(TensorDataset(torch.zeros(0, 64)))
    with pytest.raises(ValueError, match=r"`client_data\[0\]`: is empty"):
        FederatedTrainer(make_model(), [empty])
    with pytest.raises(ValueError, match="`resume_from='auto'` needs `checkpoint_dir`"):
        FederatedTrainer(make_model(), loaders, rounds=1).fit(resume_from="auto")


def test_datasets_are_wrapped_in_loaders(digits4: Any, make_model: Callable[..., MLP]) -> None:
    loaders, test = digits4
    fed = FederatedTrainer(make_model(), [dl.dataset for dl in loaders[:2]], test.dataset, rounds=1, batch_size=50)
    assert [c.num_samples for c in fed.clients] == [len(dl.dataset) for dl in loaders[:2]]
    assert fed.clients[0].data.batch_size == 50
    assert "accuracy" in fed.fit().metrics
