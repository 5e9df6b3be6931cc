"""``maelab export RUN_DIR [--format safetensors|hf|hf-vit|timm] [--out DIR] [--checkpoint PATH|epoch:N]``: the
wiring of :func:`maelab.export.export` (arguments in, the files written out)."""

from __future__ import annotations

import argparse


def cmd_export(args: argparse.Namespace) -> int:
    """Export the run; print each file written, then which of them replaced an earlier export's."""
    from maelab.export import export

    written = export(args.run_dir, args.format, args.out, args.checkpoint)
    for path in written:
        print(f"wrote {path}")
    if written.replaced:
        print(f"replaced the earlier export's {', '.join(p.name for p in written.replaced)} in {written[0].parent}")
    if written.removed:
        print(f"removed the earlier export's {', '.join(p.name for p in written.removed)} (not part of this "
              "export: a folder holds one export)")
    return 0


def add_export_parser(sub: argparse._SubParsersAction, checkpoint_help: str) -> None:
    """The ``export`` subcommand (``checkpoint_help``: the --checkpoint text every command shares)."""
    p = sub.add_parser("export", help="write the weights as safetensors: maelab's, an HF folder or timm's names")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a pretraining run directory")
    p.add_argument("--format", choices=["safetensors", "hf", "hf-vit", "timm"], default="safetensors",
                   help="safetensors: the encoder + maelab's JSON; hf: a ViTMAEForPreTraining folder (decoder "
                        "included); hf-vit: a ViTModel folder; timm: a VisionTransformer state dict")
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default RUN_DIR/export, or RUN_DIR/export/FORMAT); its other files stay, and "
                        "a file of the export's names is replaced only when an earlier maelab export wrote it")
    p.add_argument("--checkpoint", metavar="PATH|epoch:N", help=checkpoint_help)
    p.set_defaults(func=cmd_export)
