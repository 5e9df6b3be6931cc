"""The ablation commands: ``maelab ablate`` (with ``--seeds auto``: pilot, plan, planned seeds) and
``maelab report``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from maelab.errors import UserError

if TYPE_CHECKING:
    from maelab.ablate.budget import Budget
    from maelab.ablate.launcher import ClusterOptions
    from maelab.ablate.suite import Suite


def cmd_ablate(args: argparse.Namespace) -> int:
    """maelab ablate SUITE.yaml [...] [--archive FILE]: the suite's runs (:func:`_ablate`), then with --archive the
    folder packed into FILE, the stage finished or interrupted; maelab ablate --merge ARCHIVE: an archive's runs
    merged into a folder; maelab ablate --out DIR --archive FILE: DIR packed, nothing run
    (:mod:`maelab.ablate.transfer_command`)."""
    from maelab.ablate.transfer_command import cmd_merge, cmd_pack, pack_stage

    if args.merge is not None:
        return cmd_merge(args)
    if args.suite is None and args.archive and args.out:
        return cmd_pack(args)
    if args.suite is None:
        raise UserError("maelab ablate needs a suite file: maelab ablate SUITE.yaml [--out DIR], --merge ARCHIVE "
                        "to merge an archive's results, or --out DIR --archive FILE to pack a folder")
    args.packed = None
    code = _ablate(args)
    if args.packed is not None:
        pack_stage(args.archive, args.packed)
    return code


def _ablate(args: argparse.Namespace) -> int:
    """maelab ablate SUITE.yaml [--seeds N|auto] [--max-seeds N] [--out DIR] [--workers W]: every variant × seed,
    then results.csv and report.md."""
    from maelab.ablate import build_report, load_suite
    from maelab.ablate.environment import record_invocation
    from maelab.ablate.reuse import check_sources, write_sources
    from maelab.ablate.runner import pending_runs, save_suite
    from maelab.ablate.seed_plan import PILOT_SEEDS, read_plan
    from maelab.ablate.suite import check_data_found
    from maelab.ablate.transfer_command import packed_folder

    auto, seeds, max_seeds = _checked_options(args)
    suite = load_suite(args.suite, PILOT_SEEDS if auto else seeds)
    out = Path(args.out) if args.out else Path("runs") / "ablate" / suite.name
    args.packed = packed_folder(args, out)  # --archive FILE: checked before anything runs
    plan = read_plan(out) if auto else None
    if plan is not None:  # the pilot is done: the planned seeds from the start
        suite = load_suite(args.suite, plan["seeds"])
    check_data_found(suite)  # before the folder is made: a wrong data.root is one error, not a suite of failures
    sources = check_sources(out, args.reuse) if args.reuse else None
    command = " ".join(["maelab", *(args.argv or [])])
    if not args.worker:  # a worker is part of its parent's invocation
        save_suite(suite, out)  # refuses a folder that holds another suite before anything is written in it
        if (auto and plan is None) or pending_runs(suite, out):  # a rerun with nothing left to run produced nothing
            record_invocation(out, command)  # once per invocation, whatever its stages and processes
    if sources is not None:
        write_sources(out, sources)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if auto and not args.worker:
        suite = _planned_suite(args, suite, out, command, max_seeds, plan)
        if suite is None:
            return 0
    elif not _run_stage(args, suite, out, command):
        return 0
    if args.worker:
        return 0
    print(f"wrote {out / 'results.csv'}")
    print(f"wrote {build_report(out)}")
    return 0


def _checked_options(args: argparse.Namespace) -> tuple[bool, Optional[int], int]:
    """(--seeds auto?, --seeds N or None, --max-seeds) once every option is checked, before anything is written;
    sets ``args.cluster``."""
    from maelab.ablate.seed_plan import DEFAULT_MAX_SEEDS, PILOT_SEEDS

    if args.workers < 1:
        raise UserError(f"--workers {args.workers} is not valid: give at least 1")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads {args.threads} is not valid: give at least 1, or leave it out (cores / workers)")
    args.cluster = cluster_options(args)  # checked before anything is written
    args.budget = _budget(args)
    auto = args.seeds == "auto"
    seeds = None if auto or args.seeds is None else _seeds_number(args.seeds)
    if args.max_seeds is not None and not auto:
        raise UserError("--max-seeds applies with --seeds auto only: add --seeds auto, or drop --max-seeds")
    max_seeds = DEFAULT_MAX_SEEDS if args.max_seeds is None else args.max_seeds
    if auto and max_seeds < PILOT_SEEDS:
        raise UserError(f"--max-seeds {max_seeds} is below the pilot's {PILOT_SEEDS} seeds: give {PILOT_SEEDS} or more")
    return auto, seeds, max_seeds


def _budget(args: argparse.Namespace) -> Optional[Budget]:
    """--time-budget SECONDS as a Budget ending that many seconds from now (a worker gets its parent's --deadline);
    None without it."""
    from maelab.ablate.budget import Budget

    if args.time_budget is None:
        return None
    if not args.time_budget > 0:
        raise UserError(f"--time-budget {args.time_budget:g} is not valid: give the seconds the runs may take (> 0)")
    if args.cluster is not None:
        raise UserError("--time-budget is for this machine's runs; a cluster job has its own limit: drop "
                        "--time-budget, or use --timeout-min")
    if args.deadline is not None:
        return Budget(args.time_budget, args.deadline)
    return Budget.starting_now(args.time_budget)


def _seeds_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"--seeds {text} is not valid: give a number of seeds, or auto") from None


def _planned_suite(args: argparse.Namespace, suite: Suite, out: Path, command: str, max_seeds: int,
                   plan: Optional[dict]) -> Optional[Suite]:
    """--seeds auto: without a ``plan``, run the pilot ``suite`` and plan from it; then run the planned seeds (the
    planned suite, returned; None when stopped)."""
    from maelab.ablate import load_suite
    from maelab.ablate.runner import collect_and_write
    from maelab.ablate.seed_plan import describe, plan_seeds

    if plan is None:
        if not _run_stage(args, suite, out, command):
            return None
        plan = plan_seeds(suite, out, collect_and_write(suite, out), max_seeds)
        suite = load_suite(args.suite, plan["seeds"])
    elif plan["max_seeds"] != max_seeds:
        print(f"maelab: {out} already has a seed plan (cap {plan['max_seeds']}); it is kept, not revised: to plan "
              f"again, give a new --out with --reuse {out} (its pretrainings are copied)")
    print(describe(plan))
    return suite if _run_stage(args, suite, out, command) else None


def _run_stage(args: argparse.Namespace, suite: Suite, out: Path, command: str) -> bool:
    """Run ``suite``'s unfinished runs (in --workers processes); False when interrupted."""
    from maelab.ablate import run_suite
    from maelab.ablate.runner import collect_and_write, pending_runs
    from maelab.ablate.workers import WorkersStopped, run_workers
    from maelab.engine.signals import RunInterrupted

    try:
        if args.cluster is not None:
            return _launch_stage(args, suite, out, command)
        workers = min(args.workers, pending_runs(suite, out))  # no more processes than runs left to do
        if workers > 1:
            try:
                code = run_workers(Path(args.suite), out, len(suite.seeds), workers, args.threads, args.budget)
            finally:
                collect_and_write(suite, out)
            if code != 0:  # the stage is not complete: no seed plan, no report from it
                print(f"maelab: a worker stopped (exit {code}); rerun `{command}` to go on", file=sys.stderr)
                return False
        else:
            run_suite(suite, out, None, workers=args.worker or 1, budget=args.budget)  # None: recorded above
    except RunInterrupted as stopped:
        print(f"maelab: {stopped}; or rerun `{command}` to resume the whole suite", file=sys.stderr)
        return False
    except WorkersStopped as stopped:
        print(f"maelab: {stopped}; rerun `{command}` to resume the whole suite", file=sys.stderr)
        return False
    left = pending_runs(suite, out) if args.budget is not None and not args.worker else 0
    if left:  # the stage is not complete: no seed plan, no report from it
        print(f"maelab: the time budget is spent with {left} of the stage's runs left; rerun `{command}` "
              "(in the next window) to go on", file=sys.stderr)
        return False
    return True


def _launch_stage(args: argparse.Namespace, suite: Suite, out: Path, command: str) -> bool:
    """--launcher submitit(-local): the stage's runs as jobs; False when the launcher was stopped."""
    from maelab.ablate.launcher import launch_suite

    try:
        counts = launch_suite(suite, Path(args.suite), out, args.cluster, None)
    except KeyboardInterrupt:
        return False
    unfinished = {k: v for k, v in counts.items() if k != "done"}
    if unfinished:
        said = ", ".join(f"{v} {k}" for k, v in sorted(unfinished.items()))
        print(f"maelab: jobs that did not finish their run: {said}; rerun `{command}` to try them again",
              file=sys.stderr)
    return True


CLUSTER_OPTIONS = ("partition", "timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb", "max_jobs",
                   "executor_folder")


def cluster_options(args: argparse.Namespace) -> Optional[ClusterOptions]:
    """The --launcher submitit options (None for the local workers); a UserError for options that do not fit."""
    given = [name for name in CLUSTER_OPTIONS if getattr(args, name) is not None]
    if args.launcher == "local":
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise UserError(f"{flag} applies with --launcher submitit only: add --launcher submitit, or drop {flag}")
        return None
    if args.workers > 1 or args.worker:
        raise UserError("--workers is for one machine; --launcher submitit runs one job per run: drop --workers "
                        "(--max-jobs caps the jobs in flight)")
    from maelab.ablate.launcher import ClusterOptions, check_launcher

    values = {name: getattr(args, name) for name in given if name != "executor_folder"}
    folder = Path(args.executor_folder) if args.executor_folder else None
    local = args.launcher == "submitit-local"
    options = ClusterOptions(local=local, folder=folder, threads=args.threads, poll_s=1.0 if local else 10.0,
                             **values)
    check_launcher(options)
    return options


def cmd_report(args: argparse.Namespace) -> int:
    """maelab report DIR...: rebuild each DIR/report.md and its figures from DIR/results.csv; with --page FILE, one
    page of them all that opens with the answer table (docs/results.md)."""
    from maelab.ablate import build_report
    from maelab.ablate.page import build_page, check_page, page_suites
    from maelab.ablate.report import reportable_suite

    if args.title is not None and not args.page:
        raise UserError("--title is the title of --page's page: add --page FILE, or drop --title")
    # every folder (and the page) checked before any report is rebuilt: a refusal leaves them all as they were
    for out in args.out:
        reportable_suite(out)
    if args.page:
        check_page(args.page)
        page_suites(args.out)
    for out in args.out:
        print(f"wrote {build_report(out, figures=not args.no_figures)}")
    if args.page:
        print(f"wrote {build_page(args.out, args.page, args.title)}")
    return 0


def add_ablate_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ablate", help="run an ablation suite (variants × seeds) into results.csv and report.md")
    p.add_argument("suite", metavar="SUITE.yaml", nargs="?",
                   help="a suite file, e.g. configs/suites/seed_cifar10_cpu.yaml (optional with --merge)")
    p.add_argument("--seeds", help="number of seeds (0..N-1; default: the suite's), or auto: a pilot of 3 seeds, "
                   "then the seeds each claim needs for its margin (docs/ablation.md)")
    p.add_argument("--max-seeds", type=int, help="with --seeds auto: the most seeds to run (default 10)")
    p.add_argument("--out", metavar="DIR", help="the ablation folder (default runs/ablate/<suite name>)")
    p.add_argument("--workers", type=int, default=1,
                   help="runs in parallel, each in its own process (default 1); with --threads per worker")
    p.add_argument("--threads", type=int, help="torch CPU threads per worker (default: cores / workers)")
    p.add_argument("--reuse", metavar="DIR", action="append", help="another ablation's --out folder (repeatable): "
                   "a run whose pretraining config, seed included, equals one trained there copies its checkpoints "
                   "instead of training again; the evaluations still run (kept in OUT/reuse.json)")
    p.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="start a run only while its estimated length fits the time left, longest first; at the "
                        "end stop the running one with its checkpoint (a lent GPU window; docs/ablation.md)")
    p.add_argument("--archive", metavar="FILE", help="when the stage ends (finished or interrupted), pack DIR into "
                   "FILE (.tar.gz) without finished runs' checkpoints, tensorboard/, eval/cache/, export/; "
                   "without SUITE.yaml, --out DIR --archive FILE packs DIR at once and runs nothing (docs/ablation.md)")
    p.add_argument("--merge", metavar="ARCHIVE", help="run nothing: merge ARCHIVE (of --archive) into DIR (default "
                   "runs/ablate/<its suite>), rebuild results.csv (and report.md once every run is done)")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # one of --workers N's processes: N
    p.add_argument("--deadline", type=float, help=argparse.SUPPRESS)  # a worker's: its parent's budget's end
    add_cluster_arguments(p)
    p.set_defaults(func=cmd_ablate)
    p = sub.add_parser("report", help="rebuild an ablation's report.md from its results.csv")
    p.add_argument("out", metavar="DIR", nargs="+", help="the --out folder of maelab ablate (one or more)")
    p.add_argument("--no-figures", action="store_true", help="only the markdown (no PNGs)")
    p.add_argument("--page", metavar="FILE", help="also write one page of all the DIRs, opening with the table of "
                   "every claim's verdict, their figures copied beside it (e.g. docs/results.md)")
    p.add_argument("--title", help="the page's title (with --page; default: \"Results: the report's claims, "
                   "measured\", or \"the suites' claims\" when a suite's claims are its own)")
    p.set_defaults(func=cmd_report)


def add_cluster_arguments(p: argparse.ArgumentParser) -> None:
    """--launcher and the submitit options (submitit's own parameter names; docs/ablation.md)."""
    g = p.add_argument_group("on a cluster (--launcher submitit: one SLURM job per run; docs/ablation.md)")
    g.add_argument("--launcher", choices=("local", "submitit", "submitit-local"), default="local",
                   help="local: this process and its --workers (default); submitit: each run as a SLURM job; "
                   "submitit-local: the same jobs on this machine (submitit's LocalExecutor)")
    g.add_argument("--partition", metavar="P", help="the SLURM partition")
    g.add_argument("--timeout-min", type=int, metavar="MINUTES", help="each job's time limit in minutes (default "
                   "240); a job that reaches it is checkpointed and requeued, and resumes its run")
    g.add_argument("--gpus-per-node", type=int, metavar="N", help="GPUs per job (default 0)")
    g.add_argument("--cpus-per-task", type=int, metavar="N",
                   help="CPU cores per job (also its torch threads unless --threads)")
    g.add_argument("--mem-gb", type=float, metavar="GB", help="memory per job in GB (default: the partition's)")
    g.add_argument("--max-jobs", type=int, metavar="N", help="the most jobs in flight at once (default: all the runs)")
    g.add_argument("--executor-folder", metavar="DIR", help="the jobs' pickles and logs (default OUT/submitit)")
