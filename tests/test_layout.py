"""The packages' boundaries: none imports another's private (``_name``) modules.

The direction of the dependencies (``callbacks`` <- ``lightning_bridge`` <- ``federated``) is the
import-linter contract in ``pyproject.toml``, which ``make test`` checks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("callbacks", "lightning_bridge", "federated")


def _imported_modules(source: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in ``source``, function-level ones included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_no_private_module_of_another(package: str) -> None:
    offending = [
        f"{source.relative_to(ROOT)}:{line} imports {module}"
        for source in sorted((ROOT / package).rglob("*.py"))
        for line, module in _imported_modules(source)
        if module.split(".")[0] in PACKAGES
        and module.split(".")[0] != package
        and any(part.startswith("_") for part in module.split(".")[1:])
    ]
    assert not offending, "\n".join(offending)
