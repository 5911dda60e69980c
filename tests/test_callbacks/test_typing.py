"""Users' code type-checks: hooks with any subset of their arguments, and both trainers as the built-ins' trainer."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    shutil.which("mypy", path=str(Path(sys.executable).parent)) is None, reason="needs mypy"
)

USER_CALLBACKS = '''
from typing import Any

from callbacks import Callback


class EngineStyle(Callback):  # seed 000: plain hooks naming only what they use
    def on_train_start(self):
        print("start")

    def on_epoch_end(self, epoch, logs):
        print(epoch, logs)


class FederatedStyle(Callback):  # seed 003: async hooks with **kwargs, annotated
    async def on_round_end(self, trainer: Any, round_num: int, result: Any, **kwargs: Any) -> None:
        trainer.should_stop = round_num > 3

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        print(epoch, logs)

    def on_save_checkpoint(self, path: str) -> None:
        print(path)
'''

USER_TRAINERS = '''
import lightning

from callbacks import EarlyStopping, FederatedTrainerLike, LRScheduler, TrainerLike
from federated import FederatedTrainer


def stop_and_save(trainer: TrainerLike) -> None:
    trainer.should_stop = trainer.is_global_zero
    trainer.save_checkpoint("last.ckpt", weights_only=False)


def halve_client_lr(trainer: FederatedTrainerLike) -> None:
    trainer.client_lr_scale *= 0.5


def accepted(centralised: lightning.Trainer, federation: FederatedTrainer) -> None:
    stop_and_save(centralised)
    stop_and_save(federation)
    halve_client_lr(federation)
    EarlyStopping().on_validation_end(centralised, 0, {"accuracy": 1.0})
    LRScheduler().on_round_start(federation, 1)


def refused(centralised: lightning.Trainer) -> None:
    stop_and_save(object())  # refused: no should_stop, is_global_zero or save_checkpoint
    halve_client_lr(centralised)  # refused: a Lightning Trainer has no client_lr_scale
'''


def mypy(module: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(cache), "--no-error-summary", str(module)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mypy_cache")


def test_user_hooks_with_their_own_signatures_type_check(tmp_path: Path, cache: Path) -> None:
    # Prepare
    module = tmp_path / "user_callbacks.py"
    module.write_text(USER_CALLBACKS)

    # Execute
    run = mypy(module, cache)

    # Assert
    assert run.returncode == 0, run.stdout + run.stderr


def test_lightning_and_federated_trainers_satisfy_the_trainer_protocols(tmp_path: Path, cache: Path) -> None:
    # Prepare
    module = tmp_path / "user_trainers.py"
    module.write_text(USER_TRAINERS)
    lines = USER_TRAINERS.splitlines()
    refused = {number for number, line in enumerate(lines, start=1) if "# refused" in line}

    # Execute
    run = mypy(module, cache)

    # Assert: the two refused calls are the only errors, so the accepted ones type-check
    errors = re.findall(r"^[^\n]*user_trainers\.py:(\d+): error: (.*)$", run.stdout, flags=re.MULTILINE)
    assert {int(line) for line, _ in errors} == refused, run.stdout + run.stderr
    messages = " ".join(message for _, message in errors)
    assert '"object"; expected "TrainerLike"' in messages
    assert '"Trainer"; expected "FederatedTrainerLike"' in messages
