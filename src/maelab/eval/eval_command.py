"""``maelab eval RUN_DIR [--checkpoint PATH|epoch:N] [key=value ...]``: the run against its floors in one command
(:mod:`maelab.eval.floors`); light to import (the CLI builds its parser from it)."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate, write RUN_DIR/eval/eval.json, print the table and the files written."""
    from maelab.engine.distributed import is_main_process
    from maelab.eval.floors import evaluate_against_floors, write_eval
    from maelab.eval.table import format_table

    result, rows, notes = evaluate_against_floors(args.run_dir, args.overrides, args.checkpoint)
    if not is_main_process():  # under torchrun rank 0 writes and reports
        return 0
    path = write_eval(args.run_dir, result)
    print(format_table(rows, notes))
    print(f"wrote {path} (from {', '.join(Path(p).name for p in result['files'].values())})")
    return 0


def add_eval_parser(sub: argparse._SubParsersAction, checkpoint_help: str) -> None:
    p = sub.add_parser("eval", help="probe, k-NN and reconstruction against the random-init and zero-prediction "
                                    "floors, one table -> RUN_DIR/eval/eval.json")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a pretraining run directory")
    p.add_argument("--checkpoint", metavar="PATH|epoch:N", help=checkpoint_help)
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="as for probe, knn and recon: e.g. probe.epochs=5, data.limit_test=1000")
    p.set_defaults(func=cmd_eval)
