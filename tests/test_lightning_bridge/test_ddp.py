"""Native callbacks under DDP on 2 CPU processes (the fit runs in ``ddp_script.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("ddp_script.py")


def test_ddp_stop_on_one_rank_ends_both_and_files_come_from_rank_zero(tmp_path):
    # Execute
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=240, check=False
    )

    # Assert: both processes ended cleanly, after the same epoch (the one rank 0 stopped in)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for report in ranks:
        events = [tuple(e) for e in report["events"]]
        assert [e[1] for e in events if e[0] == "on_epoch_end"] == [0, 1]
        assert [e for e in events if e[0] in ("on_train_start", "on_train_end")] == [
            ("on_train_start",), ("on_train_end",),
        ]  # fmt: skip
        assert events[-1] == ("on_train_end",)
        assert {e[0] for e in events} >= {
            "on_epoch_start", "on_batch_start", "on_train_step_end", "on_batch_end",
            "on_validation_start", "on_validation_end", "on_epoch_end",
        }  # fmt: skip
        assert report["current_epoch"] == 2
    # every rank saw rank 0's logs: the same decisions everywhere
    assert ranks[0]["validation_logs"] == ranks[1]["validation_logs"]
    assert ranks[0]["epoch_logs"] == ranks[1]["epoch_logs"]
    # checkpoints are reported on rank 0 only, where they are written; one TensorBoard event file
    assert ranks[0]["saved"] and ranks[1]["saved"] == []
    assert ("on_save_checkpoint", 0) in [tuple(e) for e in ranks[0]["events"]]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "best.ckpt", "epoch=0000.ckpt", "epoch=0001.ckpt", "last.ckpt",
    ]  # fmt: skip
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 1
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 3  # header and 2 epochs
