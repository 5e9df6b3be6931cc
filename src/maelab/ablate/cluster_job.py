"""One ablation run as a submitit job (``maelab ablate --launcher submitit``).

The job does what a local worker does for one run: it claims the run's folder, pretrains (or resumes from the
run's checkpoint), evaluates, and records a failure in the run's ablate.json (runner.run_planned). It is
checkpointable the way facebookresearch/mae's submitit jobs are: on preemption or timeout submitit calls
``checkpoint()``, which hands back the same job; requeued, it resumes the run from its last checkpoint (the
runner's resume). This module imports submitit only inside ``checkpoint()``, which only a job calls.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

INTERRUPTED = "interrupted"  # a signal stopped the run after a checkpoint: rerun the suite to resume it


@dataclass(frozen=True)
class RunJob:
    """The job of ``variant`` × ``seed`` of the suite file (with ``seeds`` seeds) into the folder ``out``."""

    suite_file: str
    seeds: int
    out: str
    variant: str
    seed: int
    threads: Optional[int] = None

    @property
    def label(self) -> str:
        return f"{self.variant} seed {self.seed}"

    def __call__(self) -> str:
        """Run it: "done", "failed" (recorded in the run's ablate.json), "held" (another process has the run) or
        "interrupted" (stopped by SIGTERM/SIGINT after saving its checkpoint)."""
        from maelab.ablate.runner import plan_runs, run_planned
        from maelab.ablate.suite import load_suite
        from maelab.engine.signals import RunInterrupted

        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        suite = load_suite(Path(self.suite_file), self.seeds)
        plan = next(p for p in plan_runs(suite, Path(self.out)) if (p.variant, p.seed) == (self.variant, self.seed))
        try:
            return run_planned(plan, suite, lambda line: print(line, flush=True))
        except RunInterrupted as stopped:
            print(f"{self.label}: {stopped}", flush=True)
            return INTERRUPTED

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's preemption/timeout hook: the same job again (a ``DelayedSubmission``), which resumes the run
        from the checkpoint its pretraining last wrote."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(dataclasses.replace(self), *args, **kwargs)
