"""Keep every epoch's (or round's) metrics in memory and in a CSV or JSON Lines file."""

from __future__ import annotations

import csv
import itertools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from callbacks.arguments import key_path
from callbacks.callback import Callback
from callbacks.files import atomic_write
from callbacks.rank_zero import is_global_zero
from callbacks.registry import register
from callbacks.trainer import FederatedTrainerLike, TrainerLike

__all__ = ["MetricsLogger"]

log = logging.getLogger(__name__)


@register("callback.metrics_logger")
class MetricsLogger(Callback):
    """Records one row per epoch (centralised) or per round (federated) in ``history`` and a file.

    A row is ``{"epoch": e, **logs}`` or ``{"round": r, **result.metrics}``. The file is CSV unless
    ``path`` ends in ``.jsonl``; a CSV is rewritten when a new column appears. Only global rank 0
    writes. The state is the number of rows, so it costs the same at every checkpoint: a resumed
    run takes that many rows back from the file (rows after them were logged after the
    checkpoint, and are dropped), or, where the file lacks them, from the federation's history;
    then it rewrites the file, so each epoch or round appears once. A centralised fit whose file
    lacks rows (or with ``path=None``) warns that they are lost.

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
        self._resumed_rows: int | None = None  # rows to take back, from a loaded state
        self.state_root: str | None = None  # the folder `path` is keyed relative to (callbacks.arguments.key_path)

    @property
    def state_key(self) -> str:
        """``MetricsLogger{'path': ...}``, the path relative to ``state_root`` if one is set (the CLI's output_dir)."""
        return f"MetricsLogger{{'path': {key_path(self.state_root, self.path)!r}}}"

    def state_dict(self) -> dict[str, Any]:
        return {"rows": len(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resumed_rows = int(state_dict["rows"])

    def on_train_start(self, trainer: TrainerLike, **kwargs: Any) -> None:
        self._write = self.path is not None and is_global_zero(trainer)
        if self._resumed_rows is not None:
            self._resume(getattr(trainer, "history", None))

    def on_epoch_end(
        self, epoch: int, logs: Mapping[str, float], round_num: int | None = None, **kwargs: Any
    ) -> None:
        if round_num is None:
            self._add({"epoch": epoch, **logs})

    def on_round_end(self, trainer: FederatedTrainerLike, round_num: int, result: Any, **kwargs: Any) -> None:
        self._add({"round": round_num, **result.metrics})

    def _add(self, row: dict[str, Any]) -> None:
        if self._resumed_rows is not None:  # a state loaded after on_train_start (a strategy restoring late)
            self._resume(None)
        self.history.append(row)
        self._save([row])

    def _resume(self, federation: Sequence[Any] | None) -> None:
        """Take back the rows the loaded state counts (from the file, else ``federation``) and rewrite the file."""
        count, self._resumed_rows = self._resumed_rows or 0, None
        rows = self._read(count)
        if len(rows) < count and federation is not None and len(federation) >= count:
            rows = [{"round": r.round_num, **r.metrics} for r in federation[:count]]
        elif len(rows) < count:
            log.warning(
                "MetricsLogger: %s holds %d of the %d rows logged before the checkpoint; the missing rows "
                "are not restored", self.path or "no file (path=None)", len(rows), count,
            )
        self.history, self._columns, self._rewrite = rows, [], True
        if rows:
            self._save([])

    def _read(self, count: int) -> list[dict[str, Any]]:
        """The first ``count`` rows of the file as they were logged (fewer where it has fewer whole rows)."""
        if self.path is None or not os.path.isfile(self.path):
            return []
        rows: list[dict[str, Any]] = []
        try:
            with open(self.path, newline="") as f:
                if self.path.endswith(".jsonl"):
                    for line in itertools.islice(f, count):
                        rows.append(json.loads(line))
                else:
                    for cells in itertools.islice(csv.DictReader(f), count):
                        rows.append({k: _value(v) for k, v in cells.items() if isinstance(v, str) and v})
        except (OSError, ValueError, csv.Error):  # a damaged row ends what can be taken back
            pass
        return rows

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
            with atomic_write(self.path, newline="") as f:
                self._write_rows(f, self.history, header=True)
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


def _value(text: str) -> Any:
    """A CSV cell as it was logged: an int, a float, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
