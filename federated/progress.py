"""A federation's progress: a bar over the rounds on a terminal, one line per round elsewhere.

The CLI shows it on every run; from Python, pass it among the server callbacks:
``FederatedTrainer(..., callbacks=[RoundProgress()])``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from callbacks import Callback

__all__ = ["RoundProgress"]

_SHOWN = ("accuracy", "val_loss", "train_loss", "privacy/epsilon", "dp/epsilon")
"""The metrics a round's line shows when the round has them, after the watched one."""


class RoundProgress(Callback):
    """Shows the rounds: a tqdm bar with the live metric on a terminal, one line per round otherwise.

    A line ends with the time the round took and the time since the run started. In a notebook,
    where the output is no terminal, each round prints its line as it ends.

    Args:
        rounds: The number of rounds planned; ``None`` reads the trainer's ``rounds`` when the
            run starts. Defaults to ``None``.
        metric: The metric shown first. Defaults to ``"accuracy"``.
        stream: Where to write. Defaults to ``sys.stderr``.

    Example:
        >>> from federated import MLP, FederatedTrainer, digits_federation
        >>> loaders, test = digits_federation(num_clients=3, partition="iid", seed=0)
        >>> progress = RoundProgress(stream=sys.stdout)
        >>> fed = FederatedTrainer(MLP(hidden=16), loaders, test, rounds=2, callbacks=[progress])
        >>> _ = fed.fit()  # doctest: +ELLIPSIS
        round   1/2  train_loss=... val_loss=... accuracy=...  clients=3  took ...s  total ...s
        round   2/2  train_loss=... val_loss=... accuracy=...  clients=3  took ...s  total ...s
    """

    def __init__(self, rounds: int | None = None, metric: str = "accuracy", stream: Any = None) -> None:
        self.rounds = rounds
        self.metric = metric
        self.stream = stream if stream is not None else sys.stderr
        self._planned = 0
        self._bar: Any = None
        self._started = self._round_started = 0.0

    def on_train_start(self, trainer: Any) -> None:
        self._started = self._round_started = time.perf_counter()
        self._planned = self.rounds if self.rounds is not None else trainer.rounds
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self._planned, initial=trainer.current_round, desc="rounds", file=self.stream)

    def on_round_end(self, trainer: Any, round_num: int, result: Any) -> None:
        shown = {k: v for k, v in result.metrics.items() if k in (self.metric, *_SHOWN)}
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.4f}" for k, v in shown.items()}, refresh=False)
            self._bar.update(1)
            return
        failed = f", {len(result.failures)} failed" if result.failures else ""
        values = "  ".join(f"{k}={v:.4f}" for k, v in shown.items())
        now = time.perf_counter()
        took, self._round_started = now - self._round_started, now
        print(
            f"round {round_num:>3}/{self._planned}  {values}  clients={len(result.updates)}{failed}  "
            f"took {took:.2f}s  total {now - self._started:.1f}s",
            file=self.stream,
            flush=True,
        )

    def on_train_end(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
