"""A suite folder's results between machines: one archive out (:func:`pack_suite`), merged back in
(:func:`merge_archive`).

A GPU is lent in short windows, each on a fresh machine: a window runs some of a suite's runs and brings their
results back as one .tar.gz, merged into the local suite folder, from which the next window goes on. The archive
is the folder without what is big and of no use elsewhere: the checkpoints of finished runs, every tensorboard/,
eval/cache/ and export/ folder, the runs' .claim files, temporary files, and the folder's own windows/ (what earlier
archives brought). An unfinished run keeps its checkpoints/ (it resumes from them; its kept epoch_*.pt are needed
for later evaluations). The merge rules per run are :mod:`maelab.ablate.transfer_runs`'; every check is made
before anything is written, and a run is replaced by a rename of a whole extracted folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from maelab.ablate.claims import CLAIM_NAME, holder, is_stale
from maelab.ablate.environment import ENVIRONMENT_NAME
from maelab.ablate.results import SUITE_NAME, seed_of
from maelab.ablate.runner import collect_and_write, counted, saved_suite
from maelab.ablate.seed_plan import PLAN_NAME, read_plan
from maelab.ablate.suite import Suite, SuiteSpec
from maelab.ablate.transfer_archive import check_archive_file, extract_checked, spec_of
from maelab.ablate.transfer_runs import DONE, FAILED, TAKEN, UNFINISHED, choose, run_state
from maelab.atomic import atomic_file, write_text_atomic
from maelab.config import Config
from maelab.errors import UserError, require_folder

WINDOWS = "windows"  # extras of each archive: windows/<archive stem>/<file>
STAGING = ".merge-"  # the folder inside OUT an archive is extracted into, then renamed from
LEFT_OUT = (("tensorboard",), ("export",), ("eval", "cache"))  # of every run


@dataclass(frozen=True)
class PackSummary:
    """What :func:`pack_suite` wrote: the archive, its runs by status, its size."""

    archive: Path
    done: int
    unfinished: int
    failed: int
    bytes: int

    def line(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return f"wrote {self.archive} ({counted(self.done, 'run')} done, {self.unfinished} unfinished{failed})"


@dataclass
class MergeSummary:
    """What :func:`merge_archive` did with each run of the archive (runs/<variant>/seed<k>): taken (the archive's
    copy replaced or added), kept (this folder's is done or further along), equal (the same on both sides); and
    the extras it extracted under windows/."""

    archive: Path
    out: Path
    taken: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    equal: list[str] = field(default_factory=list)
    extras: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        lines = [f"merged {self.archive} into {self.out}: {len(self.taken)} taken, {len(self.kept)} kept, "
                 f"{len(self.equal)} already equal ({counted(len(self.taken + self.kept + self.equal), 'run')})"]
        if self.taken:
            lines.append(f"  taken from the archive: {', '.join(self.taken)}")
        if self.kept:
            lines.append(f"  kept (done here, or further along here): {', '.join(self.kept)}")
        if self.extras:
            lines.append(f"  {counted(len(self.extras), 'file')} under {self.out / WINDOWS}")
        return lines


def check_archive(archive: Path, out: Path) -> Path:
    """``archive`` as the file to pack ``out`` into. Raises UserError when it is a folder or inside ``out``."""
    archive = Path(archive)
    if archive.is_dir():
        raise UserError(f"--archive {archive} is a folder: give a file name, e.g. {archive / 'window.tar.gz'}")
    if archive.resolve().is_relative_to(Path(out).resolve()):
        raise UserError(f"--archive {archive} is inside the ablation folder {out}: give a file outside it")
    return archive


def pack_suite(out: Path, archive: Path, extra: Sequence[Path] = ()) -> PackSummary:
    """Write the ablation folder ``out`` into the .tar.gz ``archive`` (atomically; paths relative to ``out``,
    suite.yaml first), without what the module docstring lists; ``extra`` files or folders go in under
    windows/<archive stem>/<name>. Links are left out.

    Raises UserError when ``out`` is not an ablation folder, ``archive`` is a folder or inside ``out``, or an
    ``extra`` is missing or two have the same name."""
    out, archive = Path(out), check_archive(archive, out)
    saved_suite(out)
    extras = [Path(e) for e in extra]
    for e in extras:
        if not e.exists():
            raise UserError(f"{e} does not exist: give the files to pack beside the suite folder (a log, a cache)")
    if len({e.name for e in extras}) < len(extras):
        raise UserError("two extras have the same name: give files or folders of distinct names")
    states = {d: run_state(d) for d in sorted(out.glob("runs/*/*")) if d.is_dir()}
    with atomic_file(archive, "wb") as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
        for path in _packed_files(out, {d for d, s in states.items() if s == DONE}):
            tar.add(path, arcname=path.relative_to(out).as_posix(), recursive=False)
        for e in extras:
            tar.add(e, arcname=f"{WINDOWS}/{_stem(archive)}/{e.name}", filter=_no_links)
    counts = Counter(states.values())
    return PackSummary(archive, counts[DONE], counts[UNFINISHED], counts[FAILED], archive.stat().st_size)


def same_suite(a: SuiteSpec, b: SuiteSpec) -> bool:
    """Whether ``a`` and ``b`` are one suite (equal but for the number of seeds)."""
    return replace(a, seeds=0) == replace(b, seeds=0)


def merge_archive(archive: Path, out: Path) -> MergeSummary:
    """Merge ``archive`` (of :func:`pack_suite`) into the ablation folder ``out`` (made when missing), then
    rebuild OUT/results.csv. Per run: :func:`maelab.ablate.transfer_runs.choose`; environment.json: both lists'
    records, each once, in time order; seed_plan.json: taken when ``out`` has none; suite.yaml: the one with more
    seeds; windows/: extracted as it is; the archive's other top-level files are left out.

    Raises UserError, with ``out`` as it was, for: a missing, corrupt or truncated archive, one with no suite.yaml,
    a member that is a link or leaves the folder, ``out`` holding another suite or another seed plan, a run done
    in both with different results, a run to replace that a running process holds."""
    archive, out = check_archive_file(archive), require_folder(Path(out), "--out")
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING, dir=out))
    try:
        extract_checked(archive, staging)
        summary = MergeSummary(archive, out)
        decided, take = _decide(archive, staging, out, summary)
        _apply(staging, out, decided, take, summary)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if made and not any(out.iterdir()):
            out.rmdir()
    collect_and_write(folder_suite(out), out)
    return summary


class _SavedSuite(Suite):
    """A suite read back from its ablation folder: its runs' folders and results, not their configs."""

    def run_config(self, variant: str, seed: int, out_dir: Path, extra: Sequence[str] = ()) -> Config:
        return Config(name=f"{self.name}-{variant}", out_dir=str(out_dir))  # the base files stayed with the suite


def folder_suite(out: Path) -> Suite:
    """The suite of the ablation folder ``out`` as saved there, to read its runs and results (not to run them: its
    config files stayed beside the suite file); its seeds are the most of the saved suite's, the seed plan's and
    the seed folders there. Raises UserError when ``out`` is not an ablation folder."""
    spec = saved_suite(out)
    present = [k + 1 for k in (seed_of(d) for d in Path(out).glob("runs/*/*")) if k is not None]
    seeds = max([spec.seeds, (read_plan(out) or {}).get("seeds", 0), *present])
    return _SavedSuite(spec=spec, path=Path(out) / SUITE_NAME, seeds=list(range(seeds)))


def _packed_files(out: Path, done: set[Path]) -> list[Path]:
    """Every file of ``out`` to pack, suite.yaml first; the checkpoints of the runs in ``done`` left out."""
    found = []
    for root, dirs, files in os.walk(out):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not _left_out(here / d, out, done))
        found += [here / f for f in sorted(files) if _packable(here / f)]
    return sorted(found, key=lambda p: p != out / SUITE_NAME)  # stable: the walk's order otherwise


def _left_out(folder: Path, out: Path, done: set[Path]) -> bool:
    parts = folder.relative_to(out).parts
    if len(parts) == 1:
        return parts[0] == WINDOWS or parts[0].startswith(STAGING)
    if parts[0] != "runs" or len(parts) < 4:
        return False
    inner = parts[3:]
    return inner in LEFT_OUT or (inner == ("checkpoints",) and out.joinpath(*parts[:3]) in done)


def _packable(path: Path) -> bool:
    return path.name != CLAIM_NAME and not path.name.endswith(".tmp") and path.is_file() and not path.is_symlink()


def _no_links(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if info.issym() or info.islnk() else info


def _stem(archive: Path) -> str:
    name = archive.name
    for suffix in (".tar.gz", ".tgz", ".gz", ".tar"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _decide(archive: Path, staging: Path, out: Path, summary: MergeSummary) -> tuple[dict[str, Any], list[str]]:
    """Every check, nothing written: ({"suite", "plan": take the archive's?, "environment": records or None},
    the runs to take); fills ``summary``."""
    theirs = spec_of((staging / SUITE_NAME).read_text(), archive)
    mine = saved_suite(out) if (out / SUITE_NAME).is_file() else None
    if mine is not None and not same_suite(theirs, mine):
        raise UserError(f"{out} holds an ablation of another suite than {archive}'s ({theirs.name}, or the same "
                        "with other settings): merge into another --out (a new folder is made)")
    plan, their_plan = read_plan(out), read_plan(staging)
    if plan is not None and their_plan is not None and plan != their_plan:
        raise UserError(f"{out / PLAN_NAME} differs from {archive}'s: the two folders planned their seeds apart; "
                        "merge into another --out (a new folder is made)")
    take = []
    for run in sorted(d for d in staging.glob("runs/*/*") if d.is_dir()):
        name = run.relative_to(staging).as_posix()
        decision = choose(run, out / name, name)
        getattr(summary, decision).append(name)
        if decision == TAKEN:
            _check_unheld(out / name, name)
            take.append(name)
    summary.extras = sorted(p.relative_to(staging).as_posix() for p in (staging / WINDOWS).rglob("*")
                            if p.is_file())
    records = _union(_records(out / ENVIRONMENT_NAME), _records(staging / ENVIRONMENT_NAME))
    decided = {"suite": mine is None or theirs.seeds > mine.seeds, "plan": plan is None and their_plan is not None,
               "environment": None if records == _records(out / ENVIRONMENT_NAME) else records}
    return decided, take


def _check_unheld(run_dir: Path, name: str) -> None:
    h = holder(run_dir) if run_dir.is_dir() else None
    if h is not None and is_stale(h) is not True:
        raise UserError(f"{name} is being run here by process {h.pid} on {h.host or 'this host'} "
                        f"({run_dir / CLAIM_NAME}): merge again once it has stopped")


def _apply(staging: Path, out: Path, decided: dict[str, Any], take: list[str], summary: MergeSummary) -> None:
    """The writes :func:`_decide` allowed: each by a rename from ``staging`` (or an atomic file)."""
    if decided["suite"]:
        os.replace(staging / SUITE_NAME, out / SUITE_NAME)
    if decided["plan"]:
        os.replace(staging / PLAN_NAME, out / PLAN_NAME)
    if decided["environment"] is not None:
        write_text_atomic(out / ENVIRONMENT_NAME, json.dumps(decided["environment"], indent=2))
    replaced = staging / ".replaced"
    for name in take:
        target = out / name
        if target.exists():  # moved aside, then the whole new folder renamed in: never half a run
            (replaced / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(target, replaced / name)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, target)
    for name in summary.extras:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, out / name)


def _records(path: Path) -> list[dict[str, Any]]:
    try:
        return json.loads(path.read_text()) if path.is_file() else []
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err}): restore it from version control") from None


def _union(mine: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Both lists of invocations, each (command, started) once, in time order (mine first on a tie)."""
    seen = {(r.get("command"), r.get("started")) for r in mine}
    merged = mine + [r for r in theirs if (r.get("command"), r.get("started")) not in seen]
    return sorted(merged, key=lambda r: str(r.get("started", "")))
