"""Keep every epoch's (or round's) metrics in memory and in a CSV or JSON Lines file."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from typing import Any

from callbacks.callback import Callback
from callbacks.rank_zero import is_global_zero
from callbacks.registry import register

__all__ = ["MetricsLogger"]


@register("callback.metrics_logger")
class MetricsLogger(Callback):
    """Records one row per epoch (centralised) or per round (federated) in ``history`` and a file.

    A row is ``{"epoch": e, **logs}`` or ``{"round": r, **result.metrics}``. The file is CSV unless
    ``path`` ends in ``.jsonl``; a CSV is rewritten when a new column appears. Only global rank 0
    writes. A resumed run rewrites the file from the restored history as it starts, so each epoch or
    round appears once.

    Args:
        path: The file to write, or ``None`` to keep the history in memory only.
            Defaults to ``"metrics.csv"``.

    Example:
        >>> logger = MetricsLogger(path=None)
        >>> logger.on_epoch_end(epoch=0, logs={"avg_loss": 0.5})
        >>> logger.history
        [{'epoch': 0, 'avg_loss': 0.5}]
    """

    def __init__(self, path: str | None = "metrics.csv") -> None:
        self.path = os.fspath(path) if path is not None else None
        self.history: list[dict[str, Any]] = []
        self._columns: list[str] = []
        self._rewrite = True
        self._write = True

    @property
    def state_key(self) -> str:
        return f"MetricsLogger{{'path': {self.path!r}}}"

    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(row) for row in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(row) for row in state_dict["history"]]
        self._rewrite = True

    def on_train_start(self, trainer: Any, **kwargs: Any) -> None:
        self._write = self.path is not None and is_global_zero(trainer)
        if self._rewrite and self.history:  # resumed: the file holds the restored rows now, even if no row follows
            self._save([])

    def on_epoch_end(
        self, epoch: int, logs: Mapping[str, float], round_num: int | None = None, **kwargs: Any
    ) -> None:
        if round_num is None:
            self._add({"epoch": epoch, **logs})

    def on_round_end(self, trainer: Any, round_num: int, result: Any, **kwargs: Any) -> None:
        self._add({"round": round_num, **result.metrics})

    def _add(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        self._save([row])

    def _save(self, new_rows: list[dict[str, Any]]) -> None:
        """Append ``new_rows`` to the file, or write all of ``history`` when a rewrite is due."""
        if not self._write or self.path is None:
            return
        for seen in self.history if self._rewrite else new_rows:
            new_columns = [key for key in seen if key not in self._columns]
            if new_columns:
                self._columns += new_columns
                self._rewrite = True
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if self._rewrite:
            tmp = f"{self.path}.tmp"
            with open(tmp, "w", newline="") as f:
                self._write_rows(f, self.history, header=True)
            os.replace(tmp, self.path)
            self._rewrite = False
        else:
            with open(self.path, "a", newline="") as f:
                self._write_rows(f, new_rows, header=False)

    def _write_rows(self, f: Any, rows: list[dict[str, Any]], header: bool) -> None:
        if self.path is not None and self.path.endswith(".jsonl"):
            for row in rows:
                f.write(json.dumps(row) + "\n")
            return
        writer = csv.DictWriter(f, fieldnames=self._columns, restval="")
        if header:
            writer.writeheader()
        writer.writerows(rows)
