"""callbacks.files.atomic_write: the old file or the new one, also when Ctrl-C lands mid-write."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import IO, Any

import pytest
import torch

from callbacks.files import atomic_write


class CtrlCOnFirstWrite:
    """A file that receives SIGINT inside its first ``write``, as a Ctrl-C during ``torch.save`` does."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.sent = False

    def write(self, data: Any) -> int:
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def test_ctrl_c_inside_torch_save_lands_after_the_file_is_in_place(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    weights = {"w": torch.arange(5000, dtype=torch.float32)}
    with pytest.raises(KeyboardInterrupt), atomic_write(path, "wb") as f:
        torch.save(weights, CtrlCOnFirstWrite(f))

    assert torch.equal(torch.load(path, weights_only=True)["w"], weights["w"])
    assert sorted(os.listdir(tmp_path)) == ["weights.pt"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_error_while_writing_keeps_the_old_file_and_removes_the_temporary_one(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("round 1")
    with pytest.raises(ValueError, match="bad"), atomic_write(path) as f:
        f.write("round 2, half")
        raise ValueError("bad")

    assert path.read_text() == "round 1"
    assert os.listdir(tmp_path) == ["notes.txt"]
