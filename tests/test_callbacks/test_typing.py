"""Users' hooks type-check: any subset of a hook's arguments, annotated or not, sync or async."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

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


@pytest.mark.skipif(shutil.which("mypy", path=str(Path(sys.executable).parent)) is None, reason="needs mypy")
def test_user_hooks_with_their_own_signatures_type_check(tmp_path: Path) -> None:
    module = tmp_path / "user_callbacks.py"
    module.write_text(USER_CALLBACKS)
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", str(module)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
