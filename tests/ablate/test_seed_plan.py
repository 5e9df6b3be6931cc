import json

import pytest

from maelab.ablate import load_suite
from maelab.ablate.judge import NO_BASIS
from maelab.ablate.power import seeds_needed
from maelab.ablate.results import Row, by_seed, read_results
from maelab.ablate.seed_plan import PLAN_NAME, describe, plan_seeds
from maelab.ablate.stats import summarize
from maelab.cli import main
from maelab.errors import UserError


def pilot_rows(linear: list[float], baseline: list[float], metric: str = "probe_top1") -> list[Row]:
    return ([Row("linear", k, metric, v) for k, v in enumerate(linear)]
            + [Row("baseline", k, metric, v) for k, v in enumerate(baseline)])


def test_the_plan_gives_each_claim_the_seeds_its_margin_needs_from_the_pilots_spread(finished_suite, tmp_path):
    path, _ = finished_suite
    suite = load_suite(path, 3)
    # probe differences 1, 3, 2 (sd 1): "a schedule helps" is judged against its claimed gain of 5.54;
    # k-NN 30.0 on every seed of both sides: no spread to plan from, so "k-NN unchanged" asks for nothing (it was
    # "2 seeds", planned from an sd of 0) and says why
    rows = pilot_rows([41.0, 45.0, 43.0], [40.0, 42.0, 41.0]) + pilot_rows([30.0] * 3, [30.0] * 3, "knn_top1")
    plan = plan_seeds(suite, tmp_path, rows, max_seeds=10)
    gain = plan["claims"][0]
    assert gain["pilot_sd"] == pytest.approx(1.0) and gain["target"] == pytest.approx(46.52 - 40.98)
    assert gain["seeds_needed"] == seeds_needed("better", 1.0, 46.52 - 40.98) and not gain["capped"]
    knn = plan["claims"][1]
    assert (knn["seeds_needed"], knn["measured"], knn["pilot_mde"]) == (None, False, None)
    assert knn["not_planned"] == NO_BASIS and f"k-NN unchanged: not planned ({NO_BASIS})" in describe(plan)
    assert plan["seeds"] == 3  # the pilot's seeds already suffice for both
    assert json.loads((tmp_path / PLAN_NAME).read_text()) == plan


def test_a_claim_the_pilot_cannot_resolve_takes_the_seeds_it_needs_up_to_the_cap(finished_suite, tmp_path):
    path, _ = finished_suite
    suite = load_suite(path, 3)
    noisy = pilot_rows([41.0, 49.0, 43.0], [40.0, 42.0, 41.0])  # differences 1, 7, 2: sd 3.2 against a 5.54 gain
    needed = seeds_needed("better", summarize([1.0, 7.0, 2.0]).std, 46.52 - 40.98)
    plan = plan_seeds(suite, tmp_path, noisy, max_seeds=10)
    assert plan["seeds"] == needed == 5
    assert not plan["claims"][1]["measured"]  # no k-NN in this pilot: that claim asks for nothing
    capped = plan_seeds(suite, tmp_path, noisy, max_seeds=4)
    assert capped["seeds"] == 4 and capped["claims"][0]["capped"]


def test_a_failed_pilot_run_is_rerun_before_any_plan(finished_suite, tmp_path):
    path, _ = finished_suite
    rows = [*pilot_rows([41.0, 45.0], [40.0, 42.0]), Row("linear", 2, "error", None, status="failed")]
    with pytest.raises(UserError, match="pilot's runs linear seed 2 failed: rerun the same command"):
        plan_seeds(load_suite(path, 3), tmp_path, rows, max_seeds=10)
    assert not (tmp_path / PLAN_NAME).exists()


def test_seeds_auto_runs_the_pilot_plans_once_then_runs_the_planned_seeds(suite_copy, capsys):
    path, out = suite_copy  # seeds 0 and 1 already finished: the pilot adds seed 2
    recorded = len(json.loads((out / "environment.json").read_text()))
    assert main(["ablate", str(path), "--out", str(out), "--seeds", "auto", "--max-seeds", "4"]) == 0
    assert len(json.loads((out / "environment.json").read_text())) == recorded + 1  # two stages, one invocation
    plan = json.loads((out / PLAN_NAME).read_text())
    rows = read_results(out / "results.csv")
    pilot = [r for r in rows if r.seed < 3]
    linear, base = by_seed(pilot, "linear", "probe_top1"), by_seed(pilot, "baseline", "probe_top1")
    sd = summarize([linear[k] - base[k] for k in range(3)]).std
    expected = min(4, max(3, seeds_needed("better", sd, 46.52 - 40.98) or 4))
    assert plan["claims"][0]["pilot_sd"] == pytest.approx(sd) and plan["seeds"] == expected
    assert {r.seed for r in rows if r.variant == "linear"} == set(range(expected))
    assert f"seed plan ({PLAN_NAME}): {expected} seeds (pilot 3, cap 4)" in capsys.readouterr().out
    # the plan is fixed: a rerun with another cap keeps it and has nothing left to run
    assert main(["ablate", str(path), "--out", str(out), "--seeds", "auto", "--max-seeds", "9"]) == 0
    printed = capsys.readouterr().out
    assert "already has a seed plan (cap 4); it is kept, not revised" in printed
    assert json.loads((out / PLAN_NAME).read_text()) == plan and "seed 3:" not in printed
    report = (out / "report.md").read_text()
    assert f"a pilot of 3, then {expected} in all (cap 4)" in report  # the report says how the seeds were chosen


@pytest.mark.parametrize(("args", "words"), [
    (["--seeds", "many"], "--seeds many is not valid: give a number of seeds, or auto"),
    (["--max-seeds", "5"], "--max-seeds applies with --seeds auto only"),
    (["--seeds", "auto", "--max-seeds", "2"], "--max-seeds 2 is below the pilot's 3 seeds"),
])
def test_bad_seed_options_are_one_clear_error_and_nothing_runs(finished_suite, tmp_path, capsys, args, words):
    path, _ = finished_suite
    assert main(["ablate", str(path), "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and not (tmp_path / "out").exists()
