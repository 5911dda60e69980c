"""Fixtures shared by every test folder."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one intra-op thread is faster and steadier."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fresh_python() -> Callable[..., None]:
    """Run statements, one a line, in a fresh interpreter (nothing imported yet); fail with its stderr if one fails."""

    def run(*statements: str) -> None:
        completed = subprocess.run(
            [sys.executable, "-c", "\n".join(statements)], capture_output=True, text=True, timeout=120
        )
        assert completed.returncode == 0, completed.stderr

    return run
