"""Command-line interface: each subcommand wires arguments to one library function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from maelab.errors import UserError

DEMO_CONFIG = Path(__file__).parent / "demo.yaml"


def cmd_pretrain(args: argparse.Namespace) -> int:
    """maelab pretrain [-c CONFIG] [--resume RUN_DIR] [key=value ...]"""
    from maelab.config import load_config
    from maelab.engine.pretrain import pretrain, resume

    if args.resume:
        if args.config:
            raise UserError("--resume takes its config from the run directory: drop -c, or start a new run")
        run_dir = resume(args.resume, args.overrides)
    else:
        run_dir = pretrain(load_config(args.config, args.overrides))
    print(f"run directory: {run_dir}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """maelab demo [key=value ...]: a few minutes of pretraining on CIFAR-10 (or the synthetic set)."""
    from maelab.demo import run_demo

    run_demo(args.overrides)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maelab", description="Masked-autoencoder research on small images.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("pretrain", help="pretrain an MAE into a run directory")
    p.add_argument("-c", "--config", help="YAML config file (see configs/)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. optim.epochs=2")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("demo", help="the whole small loop on CPU in a few minutes")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides for the demo run")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point: run a subcommand; a UserError becomes one clear line and its exit code (2 by default)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UserError as err:
        if args.debug:
            raise
        print(f"maelab: error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 2)


if __name__ == "__main__":
    sys.exit(main())
