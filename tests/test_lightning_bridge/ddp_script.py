"""A 2-process CPU DDP fit with native callbacks, run as a program by ``test_ddp.py``.

Lightning's DDP launcher starts rank 1 by running this script again, so the fit lives here, not
in a test module. Each rank writes what its native callbacks saw to ``<out>/rank<N>.json``.

Usage: ``python ddp_script.py OUT_DIR``
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(out: Path) -> None:
    from bridge_helpers import Seed000Recorder, TinyRegression, loader
    from lightning.pytorch import Trainer

    from callbacks import Callback, MetricsLogger, ModelCheckpoint, TensorBoard
    from lightning_bridge import LightningCallbackAdapter

    class StopOnRankZero(Callback):
        """Sets ``should_stop`` on global rank 0 only, in the middle of epoch 1."""

        def on_batch_end(self, trainer, epoch, batch_idx):
            if trainer.global_rank == 0 and (epoch, batch_idx) == (1, 0):
                trainer.should_stop = True

    class SavedPaths(Callback):
        def __init__(self) -> None:
            self.paths: list[str] = []

        def on_save_checkpoint(self, path):
            self.paths.append(os.path.basename(path))

    recorder, saved = Seed000Recorder(), SavedPaths()
    natives = [
        recorder,
        saved,
        StopOnRankZero(),
        ModelCheckpoint(save_dir=str(out / "ckpt"), save_every=1, metric="val_loss", mode="min"),
        TensorBoard(log_dir=str(out / "tb")),
        MetricsLogger(path=str(out / "metrics.csv")),
    ]
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=5,
        callbacks=[LightningCallbackAdapter(natives, on_error="raise")],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    # 16 samples, batches of 4: 2 training batches per rank; validation data differs per rank
    trainer.fit(TinyRegression(), loader(samples=16), loader(samples=8, seed=1))
    report = {
        "rank": trainer.global_rank,
        "events": recorder.events,
        "validation_logs": recorder.validation_logs,
        "epoch_logs": recorder.epoch_logs,
        "saved": saved.paths,
        "current_epoch": trainer.current_epoch,
    }
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
