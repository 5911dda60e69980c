"""``python -m lightning_bridge.fed --config fed.yaml``: run a federation from a YAML file.

Exit status: 0 on success, 2 on a bad configuration or command line, 1 on a failure in training.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

from callbacks import BridgeError, ConfigError
from callbacks.arguments import one_line

__all__ = ["main"]

MAX_ERROR_LINE = 2000
"""The most characters of an error message (a user's exception may say a lot)."""

EXAMPLE = """\
example:
  python -m lightning_bridge.fed --config examples/fed.yaml
  python -m lightning_bridge.fed --config examples/fed.yaml --set data.partition.alpha=0.1 --output-dir runs/alpha0.1
  python -m lightning_bridge.fed --config examples/fed.yaml --resume auto     # after a crash
  python -m lightning_bridge.fed --config examples/fed.yaml --validate        # check only

A config (every key is optional; docs/cli.md lists them all):
  seed: 0
  rounds: 20
  output_dir: runs/digits
  data: {type: digits, num_clients: 10, partition: {type: dirichlet, alpha: 0.5}}
  model: {type: mlp, args: {hidden: 128, lr: 0.1}}
  clients: {per_round: 5, local_epochs: 1}
  callbacks: [{type: early_stopping, args: {patience: 5, metric: accuracy, mode: max}}]

exit status: 0 done, 1 training failed, 2 bad config or command line (one `error:` line on stderr)
"""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like configuration errors (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _Parser(
        prog="python -m lightning_bridge.fed",
        description="Run a federated training from a YAML config: one lightning.Trainer fit per client per round.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="the YAML config file")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY.PATH=VALUE", dest="overrides",
        help="override one config value (parsed as YAML), e.g. --set clients.per_round=3; repeatable",
    )
    parser.add_argument("--resume", metavar="auto|PATH", help="resume from a federation checkpoint; auto: the newest")
    parser.add_argument("--output-dir", help="where outputs go (overrides output_dir in the config)")
    parser.add_argument(
        "--overwrite", action="store_true",
        help="let a new run write into an output directory holding files it did not write (same names are replaced)",
    )
    parser.add_argument("--validate", action="store_true", help="check the config, build everything, and exit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    started = time.perf_counter()
    overrides = list(args.overrides)
    if args.output_dir is not None:
        overrides.append(f"output_dir={_yaml_string(args.output_dir)}")
    try:
        from federated.app.config import load_config

        load_config(args.config, overrides)  # the schema's errors answer before torch and Lightning load
        from federated.app.run import prepare_run

        run = prepare_run(args.config, overrides, resume=args.resume, overwrite=args.overwrite)
    except ConfigError as exc:
        return _fail(2, str(exc))
    except KeyboardInterrupt:
        return _fail(130, "interrupted")
    except Exception as exc:
        return _fail(1, f"{type(exc).__name__}: {exc}")
    for warning in run.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.validate:
        print(f"config OK: {run.describe()}")
        return 0
    from federated.backends.flower_backend import FlowerBackend
    from federated.backends.flower_messages import NOT_IN_SERVERAPP

    if isinstance(run.trainer.backend, FlowerBackend) and not run.trainer.backend.attached:
        return _fail(2, NOT_IN_SERVERAPP)  # a ServerApp started by `flwr run` drives it; nothing written here
    if run.resume is not None:
        print(f"resuming after round {run.resume_round} from {run.resume}", file=sys.stderr)
    elif args.resume is not None:
        print(f"no valid checkpoint under {run.output_dir}: starting afresh", file=sys.stderr)
    interrupted = f"interrupted; continue with --resume auto (checkpoints in {run.output_dir})"
    try:
        summary = run.execute()
    except KeyboardInterrupt:  # also inside a client's fit: FederatedTrainer raises it, not Lightning's exit
        return _fail(130, interrupted)
    except ConfigError as exc:  # the output directory, checked again once locked: nothing written
        return _fail(2, str(exc))
    except BridgeError as exc:
        return _fail(1, f"training failed: {exc}")
    except Exception as exc:
        return _fail(1, f"training failed: {type(exc).__name__}: {exc}")
    _print_summary(summary, time.perf_counter() - started)
    return 0


def _yaml_string(text: str) -> str:
    """``text`` as a YAML string scalar, so that ``--set key=<it>`` reads it back unchanged."""
    return json.dumps(text)  # JSON strings are YAML strings


def _fail(status: int, message: str) -> int:
    """Print ``message`` as one ``error:`` line on stderr, cut to :data:`MAX_ERROR_LINE`; return ``status``."""
    text = one_line(message[: 2 * MAX_ERROR_LINE])
    if len(text) > MAX_ERROR_LINE:
        text = f"{text[: MAX_ERROR_LINE - 3]}..."
    print(f"error: {text}", file=sys.stderr, flush=True)
    return status


def _print_summary(summary: dict[str, Any], wall: float) -> None:
    lines = [
        f"rounds run: {summary['rounds']} of {summary['planned']}"
        + (f" ({'; '.join(summary.get('stopped_by') or ['stopped early by a callback'])})"
           if summary["stopped_early"] else ""),
        f"best {summary['metric']}: {summary['best']:.4f} at round {summary['best_round']}"
        if summary.get("best") is not None
        else f"no `{summary['metric']}` reported",
        "final: " + ", ".join(f"{k}={v:.4f}" for k, v in summary["final"].items()),
        f"wall time: {wall:.1f} s",
        f"outputs: {summary['output_dir']}",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
