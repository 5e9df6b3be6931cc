"""One results page from several ablations (``maelab report DIR... --page FILE``; docs/results.md is one): the
answer table over every suite's claims first, then each suite's report.md with its figures copied beside the page.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Optional

from maelab.ablate.page_budgets import TrainingBudget, budget_table, claim_key, read_budget, shared_claims
from maelab.ablate.report import METRICS, REPORT_NAME
from maelab.ablate.report_claims import answer_head, answer_rows
from maelab.ablate.results import RESULTS_NAME, read_results
from maelab.ablate.runner import saved_suite
from maelab.ablate.suite import SuiteSpec
from maelab.atomic import write_text_atomic
from maelab.errors import UserError

DEFAULT_TITLE = "Results: the report's claims, measured"  # where every suite's claims are the report's
OWN_TITLE = "Results: the suites' claims, measured"  # where some suite is one's own (report_claims: false)
MARK = "<!-- written by `maelab report --page`: edit the suites or the code, then rewrite it -->"
BUDGETS_INTRO = ("**At each budget.** The claims that several suites judge (the same claim in every field: the CPU "
                 "suite's and the GPU suite's, say), one row each, with every suite's interval and verdict and "
                 "whether the verdict changed across the budgets; below it, what else than the epochs differs "
                 "between the suites' recipes:")
FIGURE_LINK = re.compile(r"\]\(figures/([^)]+)\)")


def build_page(dirs: list[str | Path], page: str | Path, title: Optional[str] = None) -> Path:
    """Write ``page`` (markdown) from the ablation folders ``dirs``, each with its report.md written; their figures
    go to ``<page's folder>/<page's stem>/<suite name>/``; ``title`` defaults to :data:`DEFAULT_TITLE`, or
    :data:`OWN_TITLE` when a suite's claims are its own. Returns the page's path.

    Raises UserError when ``page`` exists and was not written by this function (nothing is overwritten), when a
    folder has no report.md, or when two folders hold suites of the same name.
    """
    page = Path(page)
    check_page(page)
    suites = page_suites(dirs)
    for _, d in suites:
        if not (d / REPORT_NAME).is_file():
            raise UserError(f"{d} has no {REPORT_NAME}: run `maelab report {d}` first")
    report = all(spec.report_claims for spec, _ in suites)
    answer = _answer([read_budget(spec, d, read_results(d / RESULTS_NAME)) for spec, d in suites], report)
    sections = [_section(d, page, spec.name) for spec, d in suites]
    head = [MARK, f"# {title or (DEFAULT_TITLE if report else OWN_TITLE)}", "",
            f"Every claim {'of the report on' if report else 'of'} every suite below, judged by the 95% interval of "
            "(variant − reference), paired over seeds where they pair, with the smallest difference the seeds run "
            "could have seen at 80% power. *held*: the interval lies above 0 (a claimed gain) or "
            f"within the margin (a claimed sameness); *not held*: it lies below the {'report' if report else 'claim'}"
            "'s gain (or at or below 0), or excludes 0 and leaves the margin; *inconclusive*: neither. Each suite's "
            "own report follows, with the rule, the details and the figures.",
            "", *answer]
    text = "\n\n".join(["\n".join(head), *sections]) + "\n"
    return write_text_atomic(page, _as_given(text, [d for _, d in suites]))


def _answer(budgets: list[TrainingBudget], report: bool) -> list[str]:
    """The page's answer: the claims several suites judge side by side (page_budgets.py), then a table of every
    other claim, one row per suite and claim (the one table when no claim is shared)."""
    shared = shared_claims(budgets)
    rows = []
    for b in budgets:
        own = replace(b.suite, claims=[c for c in b.suite.claims if claim_key(c, b.suite) not in shared])
        rows += [f"| {b.suite.name} {row}" for row in answer_rows(own, b.rows, METRICS)]
    table = [answer_head(report).replace("| claim |", "| suite | claim |", 1), "| --- | --- | --- | --- | --- | --- |",
             *rows]
    if not shared:
        return table
    return [BUDGETS_INTRO, "", *budget_table(shared, METRICS, report), *(["", "The claims of one suite each:", "",
                                                                           *table] if rows else [])]


def _as_given(text: str, dirs: list[Path]) -> str:
    """Each folder's absolute path (in the recorded commands) written as it was given to ``maelab report``, and
    any other path under the current folder relative to it: a page kept in a repository names no folder of the
    machine that ran the suites (paths elsewhere stay as they are)."""
    for d in sorted(dirs, key=lambda d: len(str(d.resolve())), reverse=True):
        text = text.replace(str(d.resolve()), d.as_posix())
    return text.replace(str(Path.cwd().resolve()) + "/", "")


def page_suites(dirs: list[str | Path]) -> list[tuple[SuiteSpec, Path]]:
    """(saved suite, folder) of each of ``dirs``; UserError when one is not an ablation folder or two hold suites of
    the same name (their figures would share a folder on the page)."""
    suites = [(saved_suite(Path(d)), Path(d)) for d in dirs]
    names = [spec.name for spec, _ in suites]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        folders = ", ".join(str(d) for spec, d in suites if spec.name == twice[0])
        raise UserError(f"{folders} hold suites of the same name ({twice[0]}): their figures would share a folder; "
                        "give each suite once (a suite that extends another needs a name of its own)")
    return suites


def check_page(page: str | Path) -> None:
    """Raise UserError when ``page`` exists and was not written by :func:`build_page` (it is never overwritten)."""
    page = Path(page)
    if page.is_dir():
        raise UserError(f"--page {page} is a folder: give a file name, e.g. {page / 'results.md'}")
    if page.exists() and not page.read_text(errors="replace").startswith(MARK):
        raise UserError(f"--page {page} exists and was not written by `maelab report --page`: move it away or "
                        "give another path (nothing was written)")


def _section(folder: Path, page: Path, suite: str) -> str:
    """``folder``'s report.md one heading level down, its figures copied beside ``page`` and its links moved; a suite
    folder kept where they would go (docs/results/<suite>/, its results in git) has them linked where they are."""
    figures = Path(page.stem) / suite
    text = (folder / REPORT_NAME).read_text()
    if (page.parent / figures).resolve() == folder.resolve():
        figures = figures / "figures"
    else:
        for name in FIGURE_LINK.findall(text):
            target = page.parent / figures / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if (folder / "figures" / name).is_file():  # a report rebuilt with --no-figures may link older ones
                shutil.copyfile(folder / "figures" / name, target)
    text = FIGURE_LINK.sub(lambda m: f"]({figures.as_posix()}/{m.group(1)})", text)
    return "\n".join(_demoted(text.strip().splitlines()))


def _demoted(lines: list[str]) -> list[str]:
    """Markdown headings one level down (``#`` -> ``##``), leaving fenced code blocks as they are."""
    out, fenced = [], False
    for line in lines:
        fenced ^= line.startswith("```")
        out.append("#" + line if not fenced and re.match(r"#+ ", line) else line)
    return out
