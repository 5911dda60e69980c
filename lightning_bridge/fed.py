"""``python -m lightning_bridge.fed --config fed.yaml``: run a federation from a YAML file.

Exit status: 0 on success, 2 on a bad configuration or command line, 1 on a failure in training.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

from callbacks import BridgeError, ConfigError

__all__ = ["main"]

EXAMPLE = """\
example:
  python -m lightning_bridge.fed --config examples/fed.yaml
  python -m lightning_bridge.fed --config examples/fed.yaml --set rounds=5 --set data.partition.alpha=0.1
  python -m lightning_bridge.fed --config examples/fed.yaml --resume auto     # after a crash
  python -m lightning_bridge.fed --config examples/fed.yaml --validate        # check only

A config (every key is optional; see the README for all of them):
  seed: 0
  rounds: 20
  output_dir: runs/digits
  data: {type: digits, num_clients: 10, partition: {type: dirichlet, alpha: 0.5}}
  model: {type: mlp, args: {hidden: 128, lr: 0.1}}
  clients: {per_round: 5, local_epochs: 1}
  callbacks: [{type: early_stopping, args: {patience: 5, metric: accuracy, mode: max}}]
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
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
    parser.add_argument("--validate", action="store_true", help="check the config, build everything, and exit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    from federated.run import prepare_run

    started = time.perf_counter()
    try:
        overrides = list(args.overrides)
        if args.output_dir is not None:
            overrides.append(f"output_dir={args.output_dir}")
        run = prepare_run(args.config, overrides, resume=args.resume)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.validate:
        print(f"config OK: {run.describe()}")
        return 0
    try:
        summary = run.execute()
    except KeyboardInterrupt:
        print("interrupted; resume with --resume auto", file=sys.stderr)
        return 130
    except BridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"error: training failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    _print_summary(summary, time.perf_counter() - started)
    return 0


def _print_summary(summary: dict[str, Any], wall: float) -> None:
    lines = [
        f"rounds run: {summary['rounds']}" + (" (stopped early)" if summary.get("stopped_early") else ""),
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
