"""The README's examples run as written.

Its Python blocks run in order, each as a script, in one fresh folder. A block (Python or YAML)
whose first line is a comment naming a file (``# my_fed.py``) is that file: it is written into the
folder for the blocks after it, or, where the repository has a file of that name
(``# examples/fed.yaml``), it must be a copy of it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
FILE_COMMENT = re.compile(r"#\s*(\S+\.(?:py|ya?ml))\s*$")
RUNNER = """\
import runpy, sys, traceback
for script in sys.argv[1:]:
    try:
        runpy.run_path(script, run_name="__main__")
    except BaseException:
        traceback.print_exc()
        sys.exit(f"{script} failed")
"""


def _blocks(markdown: Path) -> list[tuple[int, str, str]]:
    """``(line, language, body)`` of every fenced block."""
    text = markdown.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def test_readme_python_examples_run_in_order(tmp_path: Path) -> None:
    scripts: list[str] = []
    for line, language, body in _blocks(ROOT / "README.md"):
        named = FILE_COMMENT.fullmatch(body.splitlines()[0]) if body.strip() else None
        content = body.split("\n", 1)[1] if named else body
        if named and (ROOT / named.group(1)).is_file():
            assert content == (ROOT / named.group(1)).read_text(), f"README.md:{line}: not a copy of {named.group(1)}"
        elif named:
            (tmp_path / named.group(1)).write_text(content)
        elif language == "python":
            script = tmp_path / f"readme_line_{line:04d}.py"
            script.write_text(body)
            scripts.append(script.name)
    assert scripts, "README.md has no Python example"
    run = subprocess.run(
        [sys.executable, "-c", RUNNER, *scripts], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-4000:]

