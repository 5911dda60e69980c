"""MetricsLogger: rows in memory and in CSV / JSON Lines, header rewrites, resume."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

from callbacks import CallbackManager, MetricsLogger

RANK_ZERO = SimpleNamespace(is_global_zero=True)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def run_epochs(logger, epochs, trainer=RANK_ZERO):
    """``epochs`` maps epoch -> logs; fires on_train_start, then on_epoch_end for each."""
    manager = CallbackManager([logger], on_error="raise")
    manager.call("on_train_start", trainer=trainer)
    for epoch, logs in epochs.items():
        manager.call("on_epoch_end", trainer=trainer, epoch=epoch, logs=logs)


def test_metrics_logger_writes_one_csv_row_per_epoch(tmp_path):
    # Prepare
    path = tmp_path / "metrics.csv"
    logger = MetricsLogger(path=str(path))

    # Execute
    run_epochs(logger, {0: {"avg_loss": 0.5, "val_loss": 0.4}, 1: {"avg_loss": 0.3, "val_loss": 0.35}})

    # Assert
    assert read_csv(path) == [["epoch", "avg_loss", "val_loss"], ["0", "0.5", "0.4"], ["1", "0.3", "0.35"]]
    assert logger.history == [
        {"epoch": 0, "avg_loss": 0.5, "val_loss": 0.4},
        {"epoch": 1, "avg_loss": 0.3, "val_loss": 0.35},
    ]


def test_metrics_logger_writes_json_lines(tmp_path):
    # Prepare
    path = tmp_path / "logs" / "metrics.jsonl"
    logger = MetricsLogger(path=str(path))

    # Execute
    run_epochs(logger, {0: {"avg_loss": 0.5}, 1: {"avg_loss": 0.25, "lr": 0.1}})

    # Assert
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [{"epoch": 0, "avg_loss": 0.5}, {"epoch": 1, "avg_loss": 0.25, "lr": 0.1}]


def test_metrics_logger_rewrites_the_header_for_a_new_column(tmp_path):
    # Prepare
    path = tmp_path / "metrics.csv"

    # Execute: validation starts reporting at epoch 1
    run_epochs(MetricsLogger(path=str(path)), {0: {"avg_loss": 0.5}, 1: {"avg_loss": 0.4, "val_loss": 0.3}})

    # Assert
    assert read_csv(path) == [["epoch", "avg_loss", "val_loss"], ["0", "0.5", ""], ["1", "0.4", "0.3"]]


def test_metrics_logger_resume_writes_each_row_once(tmp_path):
    # Prepare: the state was saved after epoch 1, but the file has rows up to epoch 2 when the run died
    path = tmp_path / "metrics.csv"
    first = MetricsLogger(path=str(path))
    run_epochs(first, {0: {"avg_loss": 0.5}, 1: {"avg_loss": 0.4}})
    state = first.state_dict()
    run_epochs(first, {2: {"avg_loss": 0.9}})

    # Execute: resume from the saved state, epoch 2 runs again
    resumed = MetricsLogger(path=str(path))
    resumed.load_state_dict(state)
    run_epochs(resumed, {2: {"avg_loss": 0.3}, 3: {"avg_loss": 0.2}})

    # Assert
    assert read_csv(path) == [["epoch", "avg_loss"], ["0", "0.5"], ["1", "0.4"], ["2", "0.3"], ["3", "0.2"]]
    assert [row["epoch"] for row in resumed.history] == [0, 1, 2, 3]


def test_metrics_logger_state_is_the_row_count(tmp_path):
    # Prepare
    logger = MetricsLogger(path=str(tmp_path / "metrics.csv"))

    # Execute
    run_epochs(logger, {epoch: {"avg_loss": 0.5 / (epoch + 1)} for epoch in range(20)})

    # Assert: the same few bytes at every checkpoint, whatever the number of rows
    assert logger.state_dict() == {"rows": 20}


def test_metrics_logger_resume_takes_json_lines_back_exactly(tmp_path):
    # Prepare: a row of epoch 2 logged after the state was saved
    path = tmp_path / "metrics.jsonl"
    first = MetricsLogger(path=str(path))
    run_epochs(first, {0: {"avg_loss": 0.1 + 0.2}, 1: {"avg_loss": float("inf")}})
    state = first.state_dict()
    run_epochs(first, {2: {"avg_loss": 0.9}})

    # Execute
    resumed = MetricsLogger(path=str(path))
    resumed.load_state_dict(state)
    run_epochs(resumed, {})

    # Assert
    assert resumed.history == [{"epoch": 0, "avg_loss": 0.1 + 0.2}, {"epoch": 1, "avg_loss": float("inf")}]
    assert [json.loads(line) for line in path.read_text().splitlines()] == resumed.history


def test_metrics_logger_resume_without_its_file_warns(tmp_path, caplog):
    # Prepare: a centralised fit's state, then its file is deleted
    path = tmp_path / "metrics.csv"
    first = MetricsLogger(path=str(path))
    run_epochs(first, {0: {"avg_loss": 0.5}, 1: {"avg_loss": 0.4}})
    path.unlink()

    # Execute
    resumed = MetricsLogger(path=str(path))
    resumed.load_state_dict(first.state_dict())
    run_epochs(resumed, {2: {"avg_loss": 0.3}})

    # Assert
    assert "holds 0 of the 2 rows logged before the checkpoint" in caplog.text
    assert read_csv(path) == [["epoch", "avg_loss"], ["2", "0.3"]]


def test_metrics_logger_one_row_per_round_not_per_client_epoch(tmp_path):
    # Prepare
    path = tmp_path / "rounds.csv"
    manager = CallbackManager([MetricsLogger(path=str(path))], on_error="raise")
    server = SimpleNamespace(is_global_zero=True)

    # Execute
    manager.call("on_train_start", trainer=server)
    for round_num in (1, 2):
        local = {"loss": 0.1}
        manager.call("on_epoch_end", trainer=server, epoch=0, logs=local, metrics=local, round_num=round_num)
        result = SimpleNamespace(metrics={"accuracy": 0.5 * round_num}, updates=[])
        manager.call("on_round_end", trainer=server, round_num=round_num, result=result)

    # Assert
    assert read_csv(path) == [["round", "accuracy"], ["1", "0.5"], ["2", "1.0"]]


def test_metrics_logger_other_ranks_keep_history_but_write_no_file(tmp_path):
    # Prepare
    path = tmp_path / "metrics.csv"
    logger = MetricsLogger(path=str(path))

    # Execute
    run_epochs(logger, {0: {"avg_loss": 0.5}}, trainer=SimpleNamespace(is_global_zero=False))

    # Assert
    assert not path.exists()
    assert logger.history == [{"epoch": 0, "avg_loss": 0.5}]
