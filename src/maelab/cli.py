"""Command-line interface: each subcommand wires arguments to one library function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from maelab.ablate.command import add_ablate_parsers
from maelab.config_command import add_config_parser
from maelab.errors import UserError
from maelab.eval.eval_command import add_eval_parser
from maelab.export_command import add_export_parser

CHECKPOINT_HELP = ("a checkpoint file other than RUN_DIR/checkpoints/last.pt, or epoch:N for the one kept after N "
                   "epochs (train.keep_checkpoints); its results are tagged, e.g. eval/probe@epoch_0010.json")


def cmd_pretrain(args: argparse.Namespace) -> int:
    """maelab pretrain [-c CONFIG] [--resume RUN_DIR] [key=value ...]"""
    from maelab.config import load_config
    from maelab.engine.distributed import is_main_process
    from maelab.engine.pretrain import pretrain, resume
    from maelab.engine.signals import RunInterrupted
    from maelab.eval.monitors import epoch_hooks

    try:
        if args.resume:
            if args.config:
                raise UserError("--resume takes its config from the run directory: drop -c, or start a new run")
            run_dir = resume(args.resume, args.overrides, monitors=epoch_hooks)
        else:
            run_dir = pretrain(load_config(args.config, args.overrides), monitors=epoch_hooks)
    except RunInterrupted as stopped:
        if is_main_process():  # under torchrun every rank stops; rank 0 says so
            print(f"maelab: {stopped}", file=sys.stderr)
        return 0
    if is_main_process():
        print(f"run directory: {run_dir}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """maelab import HF_DIR [-c CONFIG] [key=value ...]: an HF ViTMAE/ViT folder as a run directory at step 0."""
    from maelab.config import load_config
    from maelab.engine.pretrain import import_weights

    run_dir = import_weights(load_config(args.config, [*args.overrides, f"model.init_from={args.hf_dir}"]))
    print(f"run directory: {run_dir} (the weights of {args.hf_dir}, step 0: probe, finetune, knn, recon, figures "
          "and export take it; pretrain --resume trains it on)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """maelab demo [key=value ...]: a few minutes of pretraining on CIFAR-10 (or the synthetic set)."""
    from maelab.demo import run_demo

    run_demo(args.overrides)
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    """maelab figures RUN_DIR [--checkpoint PATH|epoch:N] [--out DIR] [key=value ...]; ... RUN_A RUN_B --compare"""
    from maelab.viz import write_compare, write_figures

    ratios = _float_list(args.ratios, "--ratios")
    run_dirs, overrides = _runs_and_overrides(args.run_dirs, args.overrides)
    if args.labels and not args.compare:
        raise UserError("--labels names the rows of --compare: maelab figures RUN_A RUN_B --compare --labels A B")
    if args.compare:
        if len(run_dirs) != 2 or args.checkpoint:
            raise UserError("--compare takes exactly two run directories and no --checkpoint: "
                            "maelab figures RUN_A RUN_B --compare")
        paths = [write_compare(*run_dirs, out=args.out, ratio=args.ratio, n_images=args.images, labels=args.labels,
                               overrides=overrides)]
    else:
        if len(run_dirs) != 1:
            raise UserError("figures takes one run directory (or two with --compare): maelab figures RUN_DIR")
        paths = write_figures(run_dirs[0], checkpoint=args.checkpoint, out=args.out, ratio=args.ratio,
                              ratios=ratios, n_images=args.images, overrides=overrides)
    for path in paths:
        print(path)
    return 0


def _runs_and_overrides(given: list[str], overrides: list[str]) -> tuple[list[str], list[str]]:
    """The run directories and the key=value overrides (a word with "=" that is no folder) of ``figures``."""
    runs = [g for g in given if "=" not in g or Path(g).is_dir()]
    return runs, [g for g in given if g not in runs] + list(overrides)


def _float_list(text: str, option: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{option} {text!r} is not a comma-separated list of numbers: e.g. {option} 0.25,0.5,0.75") \
            from None


def add_figures_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("figures", help="draw a run's figures (PNGs) into RUN_DIR/figures")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="a pretraining run directory (two with --compare), then overrides as for the evaluations, "
                        "e.g. data.name=folder data.root=DIR: the images of other data")
    p.add_argument("--checkpoint", metavar="PATH|epoch:N", help=CHECKPOINT_HELP)
    p.add_argument("--out", metavar="DIR", help="write the PNGs here instead of RUN_DIR/figures")
    p.add_argument("--compare", action="store_true",
                   help="RUN_A RUN_B: both runs' reconstructions of the same masked images, one row each (labelled by "
                        "what tells the runs apart, e.g. variant/seed0 in an ablation), into "
                        "compare_<label>_vs_<label>.png")
    p.add_argument("--labels", nargs="+", metavar="LABEL", help="with --compare: the rows' labels, one per run")
    p.add_argument("--ratio", type=float, help="mask ratio of the sample figures (default: the run's mask.ratio)")
    p.add_argument("--ratios", default="0.25,0.5,0.75,0.9", help="mask ratios of mask_ratios.png (comma-separated)")
    p.add_argument("--images", type=int, default=10, help="number of test images (class-balanced, seeded)")
    p.set_defaults(func=cmd_figures, overrides=[])


EVALUATIONS = {
    "probe": "linear probe on the frozen encoder -> RUN_DIR/eval/probe.json",
    "knn": "k-NN classification on frozen features -> RUN_DIR/eval/knn.json",
    "recon": "reconstruction PSNR/SSIM/sharpness -> RUN_DIR/eval/recon.json",
    "finetune": "fine-tune encoder + head with labels -> RUN_DIR/eval/finetune.json",
}


def cmd_evaluate(args: argparse.Namespace) -> int:
    """maelab probe|knn|recon|finetune RUN_DIR [--checkpoint PATH|epoch:N] [--random-init] [key=value ...]"""
    from maelab.engine.distributed import is_main_process
    from maelab.eval import commands

    func = getattr(commands, f"run_{args.command}")
    path, result = func(args.run_dir, args.overrides, args.checkpoint, args.random_init)
    if not is_main_process():  # under torchrun rank 0 reports
        return 0
    print("\n".join(summary_lines(args.command, result)))
    for line in _protocol_lines(result):
        print(line)
    print(f"wrote {path}")
    if "figure" in result:
        print(f"wrote {result['figure']}")
    return 0


def summary_lines(command: str, result: dict) -> list[str]:
    """``command: key=value, ...`` for the result's numbers ("–" for an undefined one), then a line per undefined
    value with its reason and per mean that left some items out."""
    from maelab.undefined import DASH, LEFT_OUT, UNDEFINED

    undefined, left_out = result.get(UNDEFINED, {}), result.get(LEFT_OUT, {})
    cells = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={DASH}" for k, v in result.items()
             if isinstance(v, float) or k in undefined]
    lines = [f"{command}: {', '.join(cells)}"]
    lines += [f"  {k} = {DASH}: {why}" for k, why in undefined.items()]
    lines += [f"  {k}: the mean of {o['of'] - o['count']} of {o['of']} ({o['count']} left out: {o['reason']})"
              for k, o in left_out.items()]
    return lines


def _protocol_lines(result: dict) -> list[str]:
    """One line per probe protocol when a probe trained several heads (probe.layers=all), then the best one."""
    entries = result.get("protocols", {})
    if len(entries) < 2:
        return []
    from maelab.undefined import fmt

    lines = [f"  {name:<10} layers={','.join(map(str, e['layers'])):<12} {e['norm']:<5} pool={e['pool']:<4} "
             f"dim={e['dim']:<5} top1={fmt(e['top1'], '6.2f'):>6}  top5={fmt(e['top5'], '6.2f'):>6}"
             for name, e in entries.items()]
    best = result["best"]
    return [*lines, f"  best on the test set (optimistic): {best['name']} top1={best['top1']:.2f}"]


def cmd_scratch(args: argparse.Namespace) -> int:
    """maelab scratch [-c CONFIG] [key=value ...]: the same ViT trained from random init with labels."""
    from maelab.engine.distributed import is_main_process
    from maelab.eval.commands import run_scratch

    path, result = run_scratch(args.config, args.overrides)
    if not is_main_process():  # under torchrun rank 0 reports
        return 0
    print("\n".join(summary_lines("scratch", result)))
    print(f"wrote {path}")
    return 0


def add_evaluation_parsers(sub: argparse._SubParsersAction) -> None:
    """One subcommand per evaluation; all take a run directory and the same options."""
    for name, text in EVALUATIONS.items():
        p = sub.add_parser(name, help=text)
        p.add_argument("run_dir", metavar="RUN_DIR", help="a pretraining run directory")
        p.add_argument("--checkpoint", metavar="PATH|epoch:N", help=CHECKPOINT_HELP)
        p.add_argument("--random-init", action="store_true",
                       help="evaluate a randomly initialised encoder of the same architecture (the floor)")
        p.add_argument("overrides", nargs="*", metavar="key=value",
                       help=f"e.g. {name}.<field>=..., data.limit_test=...")
        p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("scratch", help="train the same ViT from random init with labels (a baseline)")
    p.add_argument("-c", "--config", help="YAML config file (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. finetune.epochs=5")
    p.set_defaults(func=cmd_scratch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maelab", description="Masked-autoencoder research on small images.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("pretrain", help="pretrain an MAE into a run directory",
                       epilog="every config key, its value and its meaning: maelab config show [-c CONFIG] [key=value]")
    p.add_argument("-c", "--config", help="YAML config file (see configs/)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides, e.g. optim.epochs=2 (the keys: maelab config show)")
    p.set_defaults(func=cmd_pretrain)

    add_evaluation_parsers(sub)
    add_eval_parser(sub, CHECKPOINT_HELP)  # maelab eval: probe, k-NN and recon against their floors
    add_export_parser(sub, CHECKPOINT_HELP)
    p = sub.add_parser("import", help="an HF ViTMAE/ViT folder (save_pretrained's) as a maelab run directory")
    p.add_argument("hf_dir", metavar="HF_DIR", help="a folder with config.json and model.safetensors")
    p.add_argument("-c", "--config", help="YAML config for the run (data, training settings; the architecture is "
                                          "the folder's)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. out_dir=runs/hf_mae")
    p.set_defaults(func=cmd_import)

    add_figures_parser(sub)
    add_ablate_parsers(sub)
    add_config_parser(sub)

    p = sub.add_parser("demo", help="the whole small loop on CPU in a few minutes")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides for the demo run")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point: run a subcommand; a UserError becomes one clear line and its exit code (2 by default)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]  # overrides given after an option: `probe RUN --random-init k=v`
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UserError as err:
        if args.debug:
            raise
        if not getattr(err, "quiet", False):  # quiet: another rank (rank 0 under torchrun) prints the same line
            print(f"maelab: error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 2)
    except Exception as err:  # the last line of defence: an input maelab does not check, or a bug
        if args.debug:
            raise
        from maelab.atomic_output import unreported_write_error

        full = unreported_write_error(err, f"run `maelab {args.command}` again (what was written before is kept)")
        if full is not None:  # a full or read-only disk is no bug: one line, exit 2
            print(f"maelab: error: {full}", file=sys.stderr)
            return 2
        print(f"maelab: internal error in `{args.command}`: {_first_line(err)}; this is an input maelab does not "
              f"check or a bug in maelab: the traceback is in {_save_traceback()} (or rerun with --debug); please "
              "report it with the command", file=sys.stderr)
        return 1


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:300]}" if text else type(err).__name__


def _save_traceback() -> str:
    """Write the current exception's traceback to a new file in the temporary folder; returns its path."""
    import tempfile
    import traceback

    with tempfile.NamedTemporaryFile("w", prefix="maelab-traceback-", suffix=".txt", delete=False) as f:
        traceback.print_exc(file=f)
    return f.name


if __name__ == "__main__":
    sys.exit(main())
