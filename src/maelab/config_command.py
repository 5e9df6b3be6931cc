"""``maelab config show [-c FILE] [key=value ...]``: the resolved config as commented YAML
(:func:`maelab.config.show.show_config`), resolved as ``maelab pretrain`` resolves it."""

from __future__ import annotations

import argparse
import sys

ROOT_NEEDED = "REQUIRED-your-image-folder"  # what `config show` prints for a folder recipe's missing data.root
SHOW_HELP = "print the resolved config (defaults < -c FILE < overrides) as YAML, each key with its documentation"


def cmd_config_show(args: argparse.Namespace) -> int:
    """Print the config ``pretrain`` would run with for the same -c and overrides; a bad key or value is the same
    one-line ConfigError (exit 2)."""
    from maelab.config import load_config
    from maelab.config.data import MissingDataRoot
    from maelab.config.show import show_config

    try:
        cfg = load_config(args.config, args.overrides)
    except MissingDataRoot:  # a recipe for one's own folder is worth reading before there is a folder
        cfg = load_config(args.config, [*args.overrides, f"data.root={ROOT_NEEDED}"])
        print(f"maelab: data.root is not set and data.name=folder needs it: shown as {ROOT_NEEDED}; give "
              "data.root=DIR to train", file=sys.stderr)
    if cfg.model.init_from:  # as pretrain: the HF folder's architecture (imported only then: it loads torch)
        from maelab.interop.init_from import with_init_from

        cfg = with_init_from(cfg)
    sys.stdout.write(show_config(cfg))
    return 0


def add_config_parser(sub: argparse._SubParsersAction) -> None:
    """The ``config`` subcommand and its one action, ``show``."""
    p = sub.add_parser("config", help="show the resolved config: every key, its value and what it means")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help=SHOW_HELP, description=SHOW_HELP + " (written back, it is a valid -c FILE)")
    show.add_argument("-c", "--config", help="YAML config file (see configs/)")
    show.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. optim.epochs=2")
    show.set_defaults(func=cmd_config_show)
