"""The commands that move a suite folder's results between machines (:mod:`maelab.ablate.transfer`):
``maelab ablate SUITE.yaml --out DIR --archive FILE`` packs DIR into FILE once the stage ends, finished or
interrupted (without SUITE.yaml: at once, nothing run); ``maelab ablate --merge ARCHIVE [SUITE.yaml] [--out DIR]``
merges such a file into DIR."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from maelab.errors import UserError


def packed_folder(args: argparse.Namespace, out: Path) -> Optional[Path]:
    """``out`` when --archive FILE asks to pack it after the stage (FILE checked now, before anything runs: not a
    folder, not inside ``out``), else None (a worker never packs: its parent does)."""
    from maelab.ablate.transfer import check_archive

    if not args.archive or args.worker:
        return None
    check_archive(Path(args.archive), out)
    return out


def pack_stage(archive: str, out: Path) -> None:
    """Pack ``out`` into ``archive`` and say so: ``wrote FILE (N runs done, M unfinished)``."""
    from maelab.ablate.transfer import pack_suite

    print(pack_suite(out, Path(archive)).line())


def cmd_merge(args: argparse.Namespace) -> int:
    """maelab ablate --merge ARCHIVE [SUITE.yaml] [--out DIR]: the archive's runs merged into DIR (default
    runs/ablate/<the archive's suite>), results.csv rebuilt, report.md too once every run of the suite is done.
    With SUITE.yaml, the archive must hold that suite's results."""
    from maelab.ablate import build_report, load_suite
    from maelab.ablate.results import RESULTS_NAME
    from maelab.ablate.runner import counted, pending_runs
    from maelab.ablate.transfer import folder_suite, merge_archive, same_suite
    from maelab.ablate.transfer_archive import archive_suite, check_archive_file

    _check_merge_options(args)
    archive = check_archive_file(Path(args.merge))
    spec = archive_suite(archive) if args.suite or not args.out else None
    if args.suite is not None and spec is not None and not same_suite(load_suite(args.suite).spec, spec):
        raise UserError(f"{archive} holds the results of suite {spec.name} (or of it with other settings), not of "
                        f"{args.suite}: give that suite's file, or leave SUITE.yaml out")
    out = Path(args.out) if args.out else Path("runs") / "ablate" / spec.name  # type: ignore[union-attr]
    print("\n".join(merge_archive(archive, out).lines()))
    print(f"wrote {out / RESULTS_NAME}")
    left = pending_runs(folder_suite(out), out)
    if left:
        print(f"maelab: {counted(left, 'run')} of the suite not done yet: report.md is rebuilt once every run is "
              f"(`maelab report {out}` rebuilds it now)")
    else:
        print(f"wrote {build_report(out)}")
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    """maelab ablate --out DIR --archive FILE: DIR packed into FILE, nothing run (a folder carried to the next
    machine: a GPU window's bench/gpu_window.sh --carry)."""
    from maelab.ablate.transfer import check_archive

    _check_merge_options(args, "--archive without SUITE.yaml")
    out = Path(args.out)
    check_archive(Path(args.archive), out)
    pack_stage(args.archive, out)
    return 0


def _check_merge_options(args: argparse.Namespace, mode: str = "--merge") -> None:
    """Refuse the options of running a suite: --merge (or packing alone) runs nothing."""
    archive = args.archive if mode == "--merge" else None  # packing alone takes --archive
    options = {"--archive": archive, "--seeds": args.seeds, "--max-seeds": args.max_seeds, "--reuse": args.reuse,
               "--threads": args.threads, "--time-budget": getattr(args, "time_budget", None)}
    given = [flag for flag, value in options.items() if value is not None]
    given += (["--workers"] if args.workers != 1 else []) + (["--launcher"] if args.launcher != "local" else [])
    if given:
        raise UserError(f"{given[0]} does not apply with {mode}, which runs nothing: drop {given[0]}")
