"""The notebooks in ``notebooks/`` run top to bottom on a fresh kernel and draw their plots.

Each notebook is executed with nbclient on a real IPython kernel started from this interpreter (the
project's virtual environment, where ipykernel is installed by the ``dev`` extra), with a temporary
working directory and ``TMPDIR``, so that whatever it writes lands under pytest's ``tmp_path``.
The committed notebooks carry no outputs: the execution here is what shows that they work.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 300  # a cell trains for seconds; the margin is for a loaded machine


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory: pytest.TempPathFactory) -> KernelSpecManager:
    """A ``python3`` kernel spec that starts ipykernel with this interpreter, whatever else is installed."""
    root = tmp_path_factory.mktemp("kernels")
    spec_dir = root / "python3"
    spec_dir.mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return KernelSpecManager(kernel_dirs=[str(root)])


def _code_cells(nb: Any) -> list[Any]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def _pngs(cell: Any) -> int:
    return sum("image/png" in out.get("data", {}) for out in cell.outputs)


def test_notebooks_are_there() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_drop_in_lightning.ipynb",
        "02_federated_walkthrough.ipynb",
        "03_custom_callbacks.ipynb",
        "04_privacy.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    dirty = [cell.id for cell in _code_cells(nb) if cell.outputs or cell.execution_count is not None]
    assert not dirty, (
        f"{path.name}: cells {dirty} hold outputs or execution counts; notebooks are committed stripped. "
        "HINT: in Jupyter, 'Clear All Outputs' before saving"
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_specs: KernelSpecManager
) -> None:
    nb = nbformat.read(path, as_version=4)
    before = sorted(p.name for p in NOTEBOOK_DIR.iterdir())
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel inherits it: the notebook's temporary folders
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=kernel_specs)
    client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT_S, resources={"metadata": {"path": str(tmp_path)}})

    client.execute(cleanup_kc=True)  # a cell that raises fails the test (CellExecutionError names it)

    plotting = [cell for cell in _code_cells(nb) if "plt.show()" in cell.source]
    assert plotting, f"{path.name} draws no plot"
    blank = [cell.id for cell in plotting if _pngs(cell) == 0]
    assert not blank, f"{path.name}: cells {blank} call plt.show() but produced no image/png output"
    errors = [out for cell in _code_cells(nb) for out in cell.outputs if out.output_type == "error"]
    assert not errors
    assert sorted(p.name for p in NOTEBOOK_DIR.iterdir()) == before, "the notebook wrote files into notebooks/"
