"""``maelab ablate --launcher submitit``: every unfinished run of a suite as one SLURM job, through submitit.

Each job is a :class:`~maelab.ablate.cluster_job.RunJob`: it claims its run's folder and runs it exactly as a
local worker would (resume from the checkpoint, failures recorded in the run's ablate.json). The launcher
submits at most ``max_jobs`` at a time, waits for them, rebuilds results.csv as each one ends, and records a
job that died without a word (killed, out of memory, timed out too often) as that run's failure. A run held by
a live process or a running SLURM job (an earlier launcher's) is not submitted again. ``--launcher
submitit-local`` runs the same jobs on this machine with submitit's LocalExecutor (how the tests run it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

from maelab.ablate.claims import CLAIM_NAME, STALE_AFTER_S, holder, is_stale, quiet_note, release
from maelab.ablate.cluster_job import RunJob
from maelab.ablate.results import read_status, run_dir_of
from maelab.ablate.run_one import record_failure
from maelab.ablate.runner import Plan, collect_and_write, counted, start_suite
from maelab.ablate.suite import Suite
from maelab.errors import UserError

EXECUTOR_FOLDER = "submitit"  # OUT/submitit: the jobs' pickles and logs, unless --executor-folder
ACTIVE_SLURM_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING",
                       "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "UNKNOWN"}  # UNKNOWN: keep it


@dataclass(frozen=True)
class ClusterOptions:
    """How the jobs are submitted (submitit's parameter names)."""

    local: bool = False  # submitit's LocalExecutor on this machine instead of SLURM
    partition: Optional[str] = None
    timeout_min: int = 240
    gpus_per_node: int = 0
    cpus_per_task: Optional[int] = None
    mem_gb: Optional[float] = None
    max_jobs: Optional[int] = None  # jobs in flight at once (None: all)
    folder: Optional[Path] = None
    threads: Optional[int] = None  # torch threads per job (default: --cpus-per-task)
    poll_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("timeout_min", "cpus_per_task", "max_jobs", "mem_gb"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UserError(f"--{name.replace('_', '-')} {value} is not valid: give a positive number")
        if self.gpus_per_node < 0:
            raise UserError(f"--gpus-per-node {self.gpus_per_node} is not valid: give 0 or more")


def require_submitit() -> ModuleType:
    """The submitit module, or one UserError saying how to install it."""
    try:
        import submitit
    except ImportError:
        raise UserError("--launcher submitit needs the submitit package: pip install 'maelab[cluster]'") from None
    return submitit


def check_launcher(options: ClusterOptions) -> None:
    """Before anything is written: submitit is installed, and SLURM is here unless the jobs run locally."""
    require_submitit()
    if not options.local and shutil.which("sbatch") is None:
        raise UserError("--launcher submitit needs SLURM (no sbatch here): run it on the cluster's login node, or "
                        "use --launcher submitit-local (this machine) or --workers")


def make_executor(options: ClusterOptions, folder: Path, name: str) -> Any:
    """A submitit executor: LocalExecutor (``local``) or an AutoExecutor bound to SLURM."""
    submitit = require_submitit()
    if options.local:
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=options.timeout_min, gpus_per_node=options.gpus_per_node)
        return executor
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    given = {"slurm_partition": options.partition, "cpus_per_task": options.cpus_per_task,
             "mem_gb": options.mem_gb}
    executor.update_parameters(name=name, timeout_min=options.timeout_min, gpus_per_node=options.gpus_per_node,
                               nodes=1, tasks_per_node=1, **{k: v for k, v in given.items() if v is not None})
    return executor


def launch_suite(suite: Suite, suite_file: Path, out: Path, options: ClusterOptions, command: Optional[str],
                 log: Callable[[str], None] = print) -> dict[str, int]:
    """Submit every unfinished, unheld run of ``suite`` as a job, wait for them all, rebuild results.csv;
    returns how many jobs ended in each outcome ("done", "failed", "held", "interrupted"). ``command`` is recorded
    in OUT/environment.json (None: the caller recorded the invocation)."""
    out = Path(out)
    plans, todo = start_suite(suite, out, command)
    free = [p for p in todo if not _held(p, options, log)]
    folder = options.folder or out / EXECUTOR_FOLDER
    log(f"ablate {suite.name}: {counted(len(plans), 'run')}, {len(plans) - len(todo)} already finished, "
        f"{len(free)} to submit "
        f"({'submitit LocalExecutor' if options.local else 'SLURM'}; job logs in {folder})")
    counts: dict[str, int] = {}
    if free:
        executor = make_executor(options, folder, f"maelab-{suite.name}")
        jobs = [RunJob(str(Path(suite_file).resolve()), len(suite.seeds), str(out.resolve()), p.variant, p.seed,
                       options.threads or options.cpus_per_task) for p in free]
        for outcome in _submit_and_wait(executor, jobs, options, log, lambda: collect_and_write(suite, out)):
            counts[outcome] = counts.get(outcome, 0) + 1
    collect_and_write(suite, out)
    return counts


def _submit_and_wait(executor: Any, jobs: list[RunJob], options: ClusterOptions, log: Callable[[str], None],
                     collect: Callable[[], Any]) -> Iterator[str]:
    """Keep at most ``max_jobs`` jobs in flight; yield each job's outcome as it ends."""
    waiting, running, ended_count = deque(jobs), [], 0
    limit = options.max_jobs or len(jobs)
    try:
        while waiting or running:
            while waiting and len(running) < limit:
                run_job = waiting.popleft()
                running.append((_submit(executor, run_job, [job for job, _ in running]), run_job))
                log(f"  {run_job.label}: job {running[-1][0].job_id} submitted")
            ended = [(job, run_job) for job, run_job in running if job.done()]
            for job, run_job in ended:
                running.remove((job, run_job))
                ended_count += 1
                yield _settle(job, run_job, f"{ended_count} of {len(jobs)} jobs ended", log)
                collect()
            if not ended:
                time.sleep(options.poll_s)
    except KeyboardInterrupt:
        ids = ", ".join(str(job.job_id) for job, _ in running) or "none"
        fate = ("stopped with it (local jobs)" if options.local else "go on") + f" (ids {ids})"
        log(f"stopped waiting; the running jobs {fate}: rerun the same command to resume and wait for them")
        raise


def _submit(executor: Any, run_job: RunJob, running: list[Any]) -> Any:
    """One job submitted; a refusal (a partition that does not exist, say) is one UserError."""
    try:
        with maelab_importable():
            return executor.submit(run_job)
    except Exception as err:
        ids = ", ".join(str(job.job_id) for job in running) or "none"
        reason = (str(err).strip().splitlines() or [type(err).__name__])[-1][:300]
        raise UserError(f"submitting the job of {run_job.label} failed ({reason}): check --partition, "
                        f"--timeout-min and the other job options; the jobs already running go on (ids {ids}), "
                        "and the same command, rerun, submits the rest") from None


def _settle(job: Any, run_job: RunJob, progress: str, log: Callable[[str], None]) -> str:
    """The job's outcome; a job that ended without finishing or recording its run has that run marked failed."""
    try:
        outcome = job.result()
    except Exception as err:  # the job itself failed: killed, out of memory, timed out too often, no maelab...
        outcome = "failed"
        run_dir = run_dir_of(Path(run_job.out), run_job.variant, run_job.seed)
        if read_status(run_dir).get("status") not in ("done", "failed"):
            last = (str(err).strip().splitlines() or [type(err).__name__])[-1]
            record_failure(run_dir, f"job {job.job_id} failed: {last}"[:300],
                           f"{err}\n\njob log: {job.paths.stderr}")
    log(f"  {run_job.label}: {outcome} (job {job.job_id}; {progress})")
    return str(outcome)


def _held(plan: Plan, options: ClusterOptions, log: Callable[[str], None]) -> bool:
    """Whether a live process holds the run (then it is not submitted); the claim of an ended SLURM job, or of a
    process on another host gone quiet (no heartbeat for STALE_AFTER_S), is cleared."""
    h = holder(plan.run_dir)
    if h is None:
        return False
    stale = is_stale(h)
    if stale is None and h.job and not options.local:
        stale = _slurm_state(h.job, options) not in ACTIVE_SLURM_STATES
    if stale:
        note = quiet_note(h)
        if note:
            log(f"  {plan.label}: {note}; cleared")
        release(plan.run_dir)
        return False
    who = f"SLURM job {h.job}" if h.job else f"process {h.pid} on {h.host or 'this host'}"
    log(f"  {plan.label}: held by {who}, not submitted (rerun when it ends; a claim with no heartbeat for "
        f"{STALE_AFTER_S / 60:g} min is cleared, or delete {plan.run_dir / CLAIM_NAME} if it is gone)")
    return True


def _slurm_state(job_id: str, options: ClusterOptions) -> str:
    submitit = require_submitit()
    return str(submitit.SlurmJob(folder=options.folder or ".", job_id=job_id).state).split()[0].upper()


@contextlib.contextmanager
def maelab_importable() -> Iterator[None]:
    """$PYTHONPATH names this maelab while a job is submitted (the job's environment is copied from it)."""
    from maelab.ablate.workers import maelab_pythonpath

    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = maelab_pythonpath()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before
