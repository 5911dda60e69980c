"""``RoundProgress`` among a ``FederatedTrainer``'s callbacks shows each round as it ends."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from federated import MLP, FederatedTrainer, RoundProgress


class Rounds:
    """A stream that records, at each write, how many rounds the federation had finished."""

    def __init__(self) -> None:
        self.text = io.StringIO()
        self.trainer: Any = None
        self.finished_at_write: list[int] = []

    def write(self, text: str) -> int:
        self.finished_at_write.append(len(self.trainer.history))
        return self.text.write(text)

    def flush(self) -> None:
        pass


def test_round_progress_prints_a_line_as_each_round_ends(digits4: Any, make_model: Callable[..., MLP]) -> None:
    # Prepare: no terminal, so a line per round; the number of rounds is the trainer's
    loaders, test = digits4
    stream = Rounds()
    fed = FederatedTrainer(
        make_model(), loaders[:2], test, rounds=2, clients_per_round=2, callbacks=[RoundProgress(stream=stream)]
    )
    stream.trainer = fed

    # Execute
    fed.fit()

    # Assert
    lines = stream.text.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [["round", "1/2"], ["round", "2/2"]]
    assert all("accuracy=" in line and "clients=2" in line for line in lines)
    assert 1 in stream.finished_at_write and 2 in stream.finished_at_write
    assert stream.finished_at_write == sorted(stream.finished_at_write)
