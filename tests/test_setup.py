"""The set-up recipe: torch is installed first, pinned, from the index the user names."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _venv_recipe(*assignments: str) -> list[str]:
    """The commands `make venv` would run for a new environment, without running them."""
    out = subprocess.run(
        ["make", "-n", "-B", "venv", "VENV=/nonexistent/venv", *assignments],
        cwd=ROOT, capture_output=True, text=True, check=True, env={**os.environ, "MAKEFLAGS": ""},
    ).stdout
    return [line for line in out.splitlines() if "pip install" in line]


def test_venv_installs_pinned_torch_before_the_package() -> None:
    torch_line, *_, package_line = _venv_recipe()
    assert "'torch==2.13.0'" in torch_line and "--index-url" not in torch_line
    assert "-e '.[dev,ray,flower,oiafed,privacy]'" in package_line


def test_venv_installs_oiafed_without_its_dependencies_with_the_oiafed_extra() -> None:
    _, oiafed_line, _ = _venv_recipe()
    assert "--no-deps 'oiafed==0.2.3'" in oiafed_line
    assert not any("oiafed" in line for line in _venv_recipe("EXTRAS=dev"))


def test_venv_takes_torch_from_torch_index_url() -> None:
    torch_line, *_, package_line = _venv_recipe("TORCH_INDEX_URL=https://example.invalid/whl/cpu")
    assert "--index-url 'https://example.invalid/whl/cpu' 'torch==2.13.0'" in torch_line
    assert "--index-url" not in package_line  # the package's own dependencies come from the usual index
