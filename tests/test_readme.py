"""The README's and the docs pages' examples run as written, and their links lead somewhere.

Each page (README.md, every docs/*.md) is run on its own, in a fresh folder: its Python blocks run
in order, each as a script, and fail when one raises or when a callback hook in it raises (which
the dispatcher, by default, only logs), and a Python block directly followed by a ``text`` block must
print exactly that text. A block (Python or YAML) whose first line is a comment naming a file
(``# my_fed.py``) is that file: it is written into the folder for the blocks after it, or, where
the repository has a file of that name (``# examples/fed.yaml``), it must be a copy of it. A shell
block whose first line enters an example folder (``cd examples/lightning_cli``) runs too, in a copy of
``examples/``, and fails when a command fails or a callback hook in it raises.

Every relative link of these pages must name an existing file, and its ``#anchor``, if any, a
heading of the page it points to.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
DOCS_WITH_PYTHON = [page for page in DOCS if "```python" in page.read_text()]
"""The docs pages with Python examples: each must run (pages of only shell or YAML blocks have none to run)."""
README_MAX_LINES = 260
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
FILE_COMMENT = re.compile(r"#\s*(\S+\.(?:py|ya?ml))\s*$")
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
RUNNER = """\
import contextlib, io, logging, runpy, sys, traceback

class Record(logging.Handler):  # a hook that raises is only logged (on_error="warn"): count it a failure
    def emit(self, record):
        raised.append(self.format(record))

raised = []
logging.getLogger("callbacks.manager").addHandler(Record(logging.WARNING))
for script in sys.argv[1:]:
    printed = io.StringIO()  # what the script prints, kept beside it as <script>.out
    try:
        with contextlib.redirect_stdout(printed):
            runpy.run_path(script, run_name="__main__")
    except BaseException:
        traceback.print_exc()
        sys.exit(f"{script} failed")
    finally:
        with open(f"{script}.out", "w") as out:
            out.write(printed.getvalue())
    if raised:
        print(*raised, sep="\\n", file=sys.stderr)
        sys.exit(f"{script}: a callback hook raised")
"""


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def _blocks(markdown: Path) -> list[tuple[int, str, str]]:
    """``(line, language, body)`` of every fenced block."""
    text = markdown.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def _shown_outputs(markdown: Path) -> dict[int, str]:
    """The ``text`` block that directly follows a Python block (its printed output), by the Python block's line."""
    text = markdown.read_text()
    fences = list(FENCE.finditer(text))
    return {
        text.count("\n", 0, block.start()) + 1: shown.group(2)
        for block, shown in itertools.pairwise(fences)
        if block.group(1) == "python" and shown.group(1) == "text" and not text[block.end() : shown.start()].strip()
    }


def _run_examples(page: Path, folder: Path) -> list[str]:
    """Writes the page's files into ``folder``, checks its copies, runs its Python blocks; their names.

    A Python block followed by a ``text`` block must print exactly that text.
    """
    scripts: list[str] = []
    shown = _shown_outputs(page)
    for line, language, body in _blocks(page):
        named = FILE_COMMENT.fullmatch(body.splitlines()[0]) if body.strip() else None
        content = body.split("\n", 1)[1] if named else body
        if named and (ROOT / named.group(1)).is_file():
            assert content == (ROOT / named.group(1)).read_text(), (
                f"{_name(page)}:{line}: not a copy of {named.group(1)}"
            )
        elif named:
            (folder / named.group(1)).write_text(content)
        elif language == "python":
            script = folder / f"{page.stem}_line_{line:04d}.py"
            script.write_text(body)
            scripts.append(script.name)
    if scripts:
        run = subprocess.run(
            [sys.executable, "-c", RUNNER, *scripts], cwd=folder, capture_output=True, text=True, timeout=600
        )
        assert run.returncode == 0, f"{_name(page)}:\n{run.stderr[-4000:]}"
    for line, expected in shown.items():
        printed = (folder / f"{page.stem}_line_{line:04d}.py.out").read_text()
        assert printed == expected, f"{_name(page)}:{line}: prints\n{printed}\nnot what the page shows:\n{expected}"
    return scripts


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", INLINE_CODE.sub(lambda m: m.group(0)[1:-1], heading).lower())
    return text.replace(" ", "-")


def _anchors(markdown: Path) -> set[str]:
    text = FENCE.sub("", markdown.read_text())
    anchors: set[str] = set()
    for heading in HEADING.findall(text):
        slug, n = _slug(heading), 1
        while slug in anchors:  # GitHub numbers repeated headings: name, name-1, name-2, ...
            slug, n = f"{_slug(heading)}-{n}", n + 1
        anchors.add(slug)
    return anchors


def test_readme_python_examples_run_in_order(tmp_path: Path) -> None:
    assert _run_examples(README, tmp_path), "README.md has no Python example"


@pytest.mark.parametrize("page", DOCS_WITH_PYTHON, ids=lambda page: page.name)
def test_docs_page_examples_run_in_order(page: Path, tmp_path: Path) -> None:
    assert _run_examples(page, tmp_path), f"{_name(page)}: no Python block ran"


SHELL_EXAMPLES = [
    (page, line, body)
    for page in PAGES
    for line, language, body in _blocks(page)
    if language == "bash" and body.startswith("cd examples/")
]
"""The shell blocks that run: those that start in an example folder of the repository."""
HOOK_RAISED = "; training goes on"
"""How the dispatcher's log line of a hook that raised (``on_error="warn"``) ends."""


@pytest.mark.parametrize(
    ("page", "line", "body"), SHELL_EXAMPLES, ids=[f"{_name(page)}:{line}" for page, line, _ in SHELL_EXAMPLES]
)
def test_docs_shell_examples_run_as_written(page: Path, line: int, body: str, tmp_path: Path) -> None:
    # Prepare: the commands run in a copy of the examples, with this interpreter as `python`
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }

    # Execute
    run = subprocess.run(
        ["bash", "-e", "-c", body], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )

    # Assert
    assert run.returncode == 0, f"{_name(page)}:{line}:\n{run.stderr[-4000:]}"
    assert HOOK_RAISED not in run.stderr, f"{_name(page)}:{line}: a callback hook raised:\n{run.stderr[-4000:]}"


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_relative_links_resolve(page: Path) -> None:
    text = INLINE_CODE.sub("", FENCE.sub("", page.read_text()))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(ROOT)}")
    assert not broken, f"{_name(page)}: " + "; ".join(broken)


def test_readme_is_short_and_links_every_docs_page() -> None:
    text = README.read_text()
    assert DOCS, "docs/ has no page"
    assert text.count("\n") <= README_MAX_LINES, f"README.md has more than {README_MAX_LINES} lines"
    unlinked = [_name(page) for page in DOCS if f"({_name(page)})" not in text]
    assert not unlinked, f"README.md does not link {unlinked}"
    no_way_back = [_name(page) for page in DOCS if "](../README.md)" not in page.read_text()]
    assert not no_way_back, f"{no_way_back} do not link back to README.md"
