"""Ablations: a suite of variants × seeds run into one folder, results.csv, and report.md with error bars."""

from maelab.ablate.report import build_report
from maelab.ablate.runner import run_suite
from maelab.ablate.suite import Suite, load_suite

__all__ = ["Suite", "build_report", "load_suite", "run_suite"]
