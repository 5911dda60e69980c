"""The README's command-line block runs as written, line after line, in a fresh folder."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from cli_helpers import REPO, cli_env, snapshot

COMMAND = "python -m lightning_bridge.fed"


def _readme_commands() -> list[list[str]]:
    """The lines of the README's block of CLI commands, as argument lists (comments dropped)."""
    blocks = re.findall(r"^```bash\n(.*?)^```$", (REPO / "README.md").read_text(), re.DOTALL | re.MULTILINE)
    block = next(b for b in blocks if all(line.startswith(COMMAND) for line in b.splitlines()))
    return [shlex.split(line, comments=True) for line in block.splitlines()]


def test_readme_cli_lines_run_in_order_and_the_last_resumes_the_first(tmp_path: Path) -> None:
    # Prepare: the folder a user runs the commands in, with the example config they name
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    commands = _readme_commands()
    assert [c[-2:] for c in commands[2:]] == [["--resume", "auto"]], commands

    # Execute: each line as written, `python` being this interpreter
    runs, outputs = [], []
    for command in commands:
        runs.append(
            subprocess.run(
                [sys.executable, *command[1:]], cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
                timeout=300, check=False,
            )
        )
        outputs.append(snapshot(tmp_path / "runs" / "digits"))

    # Assert: every line succeeds; the second leaves the first's run alone, so the third resumes it
    assert [run.returncode for run in runs] == [0, 0, 0], [run.stderr[-2000:] for run in runs]
    assert outputs[1] == outputs[0]
    assert "resuming after round 20 from runs/digits/checkpoints/last.ckpt" in runs[2].stderr
