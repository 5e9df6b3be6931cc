"""The page gives a claim that several suites judge (the CPU suite's 6 epochs, the GPU suite's 100) in one row, each
suite's interval and verdict side by side, and says whether the verdict changed with more epochs."""

import json
import shutil
from dataclasses import replace

import pytest

from maelab.ablate import load_suite, run_suite
from maelab.ablate.judge import judge
from maelab.ablate.page_budgets import (
    TrainingBudget,
    budget_table,
    changed,
    claim_key,
    read_budget,
    shared_claims,
)
from maelab.ablate.recipe import baseline_config, recipe_of
from maelab.ablate.report import METRICS
from maelab.ablate.results import read_results
from maelab.ablate.runner import saved_suite
from maelab.cli import main
from tests.ablate.conftest import write_suite


def as_if_on(device, run_infos):
    """Each run_info.json of ``run_infos`` rewritten as if its starts had run on ``device`` ("cuda": a GPU
    window's runs, merged here; this machine has none)."""
    for info in run_infos:
        info.write_text(json.dumps([{**start, "device": device} for start in json.loads(info.read_text())]))


@pytest.fixture(scope="module")
def longer_suite_run(tmp_path_factory):
    """The tiny suite's claims run again under another name with 3 epochs instead of 2, as if on a GPU."""
    root = tmp_path_factory.mktemp("long")
    out = root / "long"
    run_suite(load_suite(write_suite(root / "suite_long", name="tiny_long", overrides=["optim.epochs=3"])), out,
              "maelab ablate suite.yaml", log=lambda _: None)
    as_if_on("cuda", out.glob("runs/*/*/run_info.json"))
    return out


@pytest.fixture
def longer_suite(longer_suite_run, tmp_path):
    """A copy of it a test may change."""
    return shutil.copytree(longer_suite_run, tmp_path / "long")


def test_a_claim_of_two_suites_is_one_row_with_each_budgets_verdict_and_whether_it_changed(suite_copy, longer_suite,
                                                                                          tmp_path):
    _, short = suite_copy
    page = tmp_path / "results.md"
    assert main(["report", str(short), str(longer_suite), "--page", str(page), "--no-figures"]) == 0
    answer = page.read_text().split("## Ablation")[0]
    assert "| tiny (2 epochs, CPU): Δ [95% CI] | verdict | tiny_long (3 epochs, GPU): Δ [95% CI] | verdict |" in answer
    assert "The claims of one suite each" not in answer  # every claim is shared: no second table
    for claim in saved_suite(short).claims:
        row = [line for line in answer.splitlines() if line.startswith(f"| {claim.text} (")]
        assert len(row) == 1, f"{claim.text}: one row, not one per suite"
        verdicts = [judge(claim, saved_suite(d), read_results(d / "results.csv")).verdict
                    for d in (short, longer_suite)]
        cells = row[0].split(" | ")
        assert [c.strip("*") for c in cells if c.startswith("**")] == verdicts
        budgets = [read_budget(saved_suite(d), d, []) for d in (short, longer_suite)]
        assert cells[-1].rstrip(" |") == changed(list(zip(verdicts, budgets, strict=True)), 2)
    assert "differs from" not in answer  # the two recipes differ in their epochs only


def test_a_claim_of_one_suite_stays_in_the_table_of_one_suite_each(suite_copy, longer_suite, tmp_path):
    _, short = suite_copy
    saved = (longer_suite / "suite.yaml").read_text().replace("k-NN unchanged", "k-NN unchanged by a third epoch")
    (longer_suite / "suite.yaml").write_text(saved)
    page = tmp_path / "results.md"
    assert main(["report", str(short), str(longer_suite), "--page", str(page), "--no-figures"]) == 0
    answer = page.read_text().split("## Ablation")[0]
    side_by_side, own = answer.split("The claims of one suite each:")
    assert "| a schedule helps (linear vs baseline" in side_by_side and "k-NN" not in side_by_side
    assert "| tiny | k-NN unchanged (" in own and "| tiny_long | k-NN unchanged by a third epoch (" in own


def test_a_budget_without_runs_says_not_run_yet_and_no_change_is_claimed(suite_copy):
    _, short = suite_copy
    spec, rows = saved_suite(short), read_results(short / "results.csv")
    ran = read_budget(spec, short, rows)
    assert (ran.epochs, ran.device) == (2, "CPU")  # what the runs recorded
    shared = {claim_key(spec.claims[0], spec): [ran, TrainingBudget(spec, [], 100, "GPU")]}
    row = budget_table(shared, METRICS, report=True)[2]
    assert "| not run yet | – |" in row and row.endswith("| – (1 of 2 budgets judged so far) |")
    one_seed = [r for r in rows if r.seed == 0]  # a suite under way: one seed of each side, no interval yet
    shared[next(iter(shared))][1] = TrainingBudget(spec, one_seed, 100, "GPU")
    row = budget_table(shared, METRICS, report=True)[2]
    assert "not run yet" not in row and row.endswith("| – (1 of 2 budgets judged so far) |")
    assert row.count("**") == 2 and "needs 2+ seeds" in row  # the one verdict is the budget that has an interval


def test_a_suite_whose_runs_were_split_between_cpu_and_gpu_says_both(suite_copy):
    _, out = suite_copy
    as_if_on("cuda", [out / "runs" / "linear" / "seed1" / "run_info.json"])
    assert read_budget(saved_suite(out), out, []).device == "CPU+GPU"


def test_a_folder_whose_runs_recorded_nothing_still_renders_and_claims_no_direction(suite_copy, longer_suite,
                                                                                    tmp_path):
    _, short = suite_copy
    for recorded in [*short.glob("runs/*/*/run_info.json"), *short.glob("runs/*/*/config.yaml")]:
        recorded.unlink()  # a folder kept before these files existed
    (longer_suite / "runs" / "linear" / "seed0" / "run_info.json").write_text("{not json")
    unknown = read_budget(saved_suite(short), short, [])
    assert (unknown.epochs, unknown.device, unknown.recipe, unknown.budget) == (None, "?", None, "? epochs (?)")
    assert read_budget(saved_suite(longer_suite), longer_suite, []).device == "GPU"  # the unreadable file skipped
    page = tmp_path / "results.md"
    assert main(["report", str(short), str(longer_suite), "--page", str(page), "--no-figures"]) == 0
    assert "tiny (? epochs, ?)" in page.read_text()
    known = read_budget(saved_suite(longer_suite), longer_suite, [])
    assert changed([("held", known), ("not held", unknown)], 2).startswith("cannot tell: the epochs of tiny are")


def test_a_claim_with_another_margin_or_figure_is_another_claim(suite_copy):
    _, short = suite_copy
    spec, rows = saved_suite(short), read_results(short / "results.csv")
    other = replace(spec, name="tiny_strict", claims=[replace(c, margin=c.margin / 2) if c.kind == "same"
                                                        else replace(c, claimed=60.0) for c in spec.claims])
    assert shared_claims([read_budget(spec, short, rows), TrainingBudget(other, rows, 3, "CPU")]) == {}
    same = replace(spec, name="tiny_again", claims=[replace(c, reference=spec.baseline) for c in spec.claims])
    assert len(shared_claims([read_budget(spec, short, rows), TrainingBudget(same, rows, 3, "CPU")])) == 2
    twice = replace(spec, claims=[*spec.claims, spec.claims[0]])  # one suite listing a claim twice shares nothing
    assert shared_claims([TrainingBudget(twice, rows, 2, "CPU")]) == {}


def test_the_budgets_are_columns_fewest_epochs_first_over_every_shared_claim(suite_copy):
    _, short = suite_copy
    spec, rows = saved_suite(short), read_results(short / "results.csv")
    first, second = spec.claims
    only_first = replace(spec, name="only_first", claims=[first])
    budgets = [TrainingBudget(only_first, rows, 9, "GPU"), TrainingBudget(spec, rows, 2, "CPU"),
               TrainingBudget(replace(spec, name="long"), rows, 5, "CPU")]
    head = budget_table(shared_claims(budgets), METRICS, report=True)[0]
    assert head.index("tiny (2") < head.index("long (5") < head.index("only_first (9")


def test_the_recipe_is_the_baselines_config_without_where_and_how_it_ran_with_the_evaluation_overrides(suite_copy):
    _, short = suite_copy
    spec = saved_suite(short)
    recipe = recipe_of(baseline_config(spec, short), replace(spec, eval_overrides=["recon.limit=7"]))
    assert recipe["model.preset"] == "micro" and recipe["recon.limit"] == 7 and "train.precision" in recipe
    assert not {"optim.epochs", "name", "out_dir", "train.seed", "train.threads"} & set(recipe)


def test_a_recipe_that_differs_in_more_than_the_epochs_is_said_below_the_table(suite_copy):
    _, short = suite_copy
    spec, rows = saved_suite(short), read_results(short / "results.csv")
    cpu = TrainingBudget(spec, rows, 6, "CPU", {"model.depth": 4, "optim.lr": 0.005})
    gpu = TrainingBudget(replace(spec, name="tiny_gpu"), rows, 100, "GPU", {"model.depth": 12, "optim.lr": 0.005})
    lines = budget_table(shared_claims([cpu, gpu]), METRICS, report=True)
    assert lines[-1] == "tiny_gpu differs from tiny in more than its epochs: model.depth 4 → 12."
    same = TrainingBudget(replace(spec, name="tiny_gpu"), rows, 100, "GPU", dict(cpu.recipe))
    assert budget_table(shared_claims([cpu, same]), METRICS, report=True)[-1].startswith("| ")  # no note


def test_the_change_names_each_verdict_with_its_budget(suite_copy):
    _, short = suite_copy
    spec = saved_suite(short)
    cpu, gpu6, gpu = (TrainingBudget(spec, [], e, d) for e, d in ((6, "CPU"), (6, "GPU"), (100, "GPU")))
    assert changed([("not held", cpu), ("held", gpu)], 2) == ("yes: not held at 6 epochs (CPU) → held at 100 epochs "
                                                              "(GPU)")
    assert changed([("not held", cpu), ("not held", gpu6), ("held", gpu)], 3).count("→") == 2
    assert changed([("held", cpu), ("held", gpu)], 2) == "no (held)"
    assert changed([("held", cpu), ("inconclusive", gpu)], 2) == ("not reversed: held at 6 epochs (CPU) "
                                                                  "→ inconclusive at 100 epochs (GPU)")
    assert changed([("inconclusive", cpu)], 3) == "– (1 of 3 budgets judged so far)"
    other = TrainingBudget(replace(spec, name="tiny_lr"), [], 6, "CPU")  # another suite at the same budget
    assert changed([("held", cpu), ("inconclusive", other)], 2) == ("differs between suites at the same budget: held "
                                                                    "in tiny (6 epochs, CPU), inconclusive in tiny_lr "
                                                                    "(6 epochs, CPU)")
    assert changed([("held", cpu), ("held", other), ("not held", gpu)], 3) == ("yes: held at 6 epochs (CPU) → not "
                                                                               "held at 100 epochs (GPU)")
    ordered = shared_claims([gpu, gpu6, cpu])  # fewest epochs first, the CPU's before the GPU's at equal epochs
    assert all(budgets == [cpu, gpu6, gpu] for budgets in ordered.values()) and len(ordered) == len(spec.claims)
