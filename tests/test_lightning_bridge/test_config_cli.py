"""The adapter built from YAML: ``from_config``, config errors, and LightningCLI."""

from __future__ import annotations

import csv
import sys

import pytest
from bridge_helpers import RegressionData, TinyRegression
from lightning.pytorch.cli import LightningCLI

from callbacks import ConfigError, EarlyStopping, MetricsLogger, TensorBoard
from lightning_bridge import LightningCallbackAdapter

CALLBACKS_YAML = """\
callbacks:
  - type: early_stopping
    args: {patience: 3, metric: val_loss, mode: min}
  - type: metrics_logger
    args: {path: %s}
"""


def test_from_config_reads_a_yaml_file_and_a_mapping(tmp_path):
    # Prepare
    path = tmp_path / "callbacks.yaml"
    path.write_text(CALLBACKS_YAML % (tmp_path / "metrics.csv"))
    mapping = {"callbacks": [{"type": "tensorboard", "args": {"log_dir": str(tmp_path / "tb")}}, "early_stopping"]}

    # Execute
    from_file = LightningCallbackAdapter.from_config(path)
    from_mapping = LightningCallbackAdapter.from_config(mapping, on_error="raise")

    # Assert: config order, arguments applied
    stopper, metrics = from_file.callbacks
    assert isinstance(stopper, EarlyStopping)
    assert (stopper.patience, stopper.metric, stopper.mode) == (3, "val_loss", "min")
    assert isinstance(metrics, MetricsLogger) and metrics.path == str(tmp_path / "metrics.csv")
    assert [type(cb) for cb in from_mapping.callbacks] == [TensorBoard, EarlyStopping]
    assert from_mapping.manager.on_error == "raise"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            "callbacks:\n  - type: tensorboard\n  - type: early_stopping\n    args: {patince: 3}\n",
            r"callbacks\.yaml: callbacks\[1\]\.args\.patince: unknown argument `patince` "
            r"\(did you mean `patience`\?\); accepted: metric, min_delta, mode, patience$",
        ),
        (
            "callbacks:\n  - type: early_stoping\n",
            r"callbacks\.yaml: callbacks\[0\]\.type: unknown callback type 'early_stoping' "
            r"\(did you mean `early_stopping`\?\); known: .*early_stopping",
        ),
        (
            "callbacks:\n  - type: early_stopping\n    args: {patience: three}\n",
            r"callbacks\.yaml: callbacks\[0\]\.args\.patience: expected int, got str 'three'$",
        ),
        ("callbacks: [\n", r"callbacks\.yaml: invalid YAML at line 2, column 1: "),
    ],
)
def test_from_config_bad_file_is_one_line_naming_the_file_and_key_path(tmp_path, yaml_text, message):
    # Prepare
    path = tmp_path / "callbacks.yaml"
    path.write_text(yaml_text)

    # Execute
    with pytest.raises(ConfigError, match=message) as caught:
        LightningCallbackAdapter.from_config(path)

    # Assert
    assert "\n" not in str(caught.value)


def test_from_config_bad_mapping_names_the_key_path():
    with pytest.raises(ConfigError, match=r"^callbacks\[0\]\.args\.mode: expected one of 'min', 'max', got str 'up'$"):
        LightningCallbackAdapter.from_config({"callbacks": [{"type": "early_stopping", "args": {"mode": "up"}}]})


def test_from_config_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read the file"):
        LightningCallbackAdapter.from_config(tmp_path / "missing.yaml")


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def adapters(cli):
    return [cb for cb in cli.trainer.callbacks if isinstance(cb, LightningCallbackAdapter)]


QUIET_CLI = [
    "--trainer.max_epochs=2",
    "--trainer.logger=false",
    "--trainer.enable_checkpointing=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.accelerator=cpu",
]


def test_lightning_cli_adds_the_adapter_from_the_command_line(tmp_path, monkeypatch):
    # Prepare
    monkeypatch.setattr(sys, "argv", ["train.py"])  # pytest's own arguments are no CLI input
    config = tmp_path / "callbacks.yaml"
    config.write_text(CALLBACKS_YAML % (tmp_path / "metrics.csv"))
    args = [
        "fit",
        "--trainer.callbacks+=lightning_bridge.LightningCallbackAdapter",
        f"--trainer.callbacks.callbacks={config}",
        "--trainer.callbacks.on_error=raise",
        *QUIET_CLI,
    ]

    # Execute
    cli = LightningCLI(TinyRegression, RegressionData, args=args, save_config_callback=None)

    # Assert
    (adapter,) = adapters(cli)
    assert [type(cb) for cb in adapter.callbacks] == [EarlyStopping, MetricsLogger]
    assert adapter.manager.on_error == "raise"
    assert [row["epoch"] for row in rows(tmp_path / "metrics.csv")] == ["0", "1"]


def test_lightning_cli_takes_the_adapter_from_a_config_file(tmp_path, monkeypatch):
    # Prepare: the callbacks inline, as `{type, args}` entries
    monkeypatch.setattr(sys, "argv", ["train.py"])
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""\
trainer:
  callbacks:
    - class_path: lightning_bridge.LightningCallbackAdapter
      init_args:
        callbacks:
          - type: metrics_logger
            args: {{path: {tmp_path / "metrics.csv"}}}
"""
    )

    # Execute
    cli = LightningCLI(
        TinyRegression, RegressionData, args=["fit", f"--config={config}", *QUIET_CLI], save_config_callback=None
    )

    # Assert
    (adapter,) = adapters(cli)
    assert [type(cb) for cb in adapter.callbacks] == [MetricsLogger]
    assert [row["epoch"] for row in rows(tmp_path / "metrics.csv")] == ["0", "1"]
