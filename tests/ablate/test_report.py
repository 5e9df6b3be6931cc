import json
import re
import shutil

from maelab.ablate import load_suite, run_suite
from maelab.ablate.power import mde
from maelab.ablate.report import build_report
from maelab.ablate.report_cells import mean_std, p_value
from maelab.ablate.results import by_seed, read_results, values_of
from maelab.ablate.runner import collect_and_write
from maelab.ablate.stats import Difference, paired, summarize, welch
from maelab.cli import main
from tests.ablate.conftest import write_suite


def test_ablate_from_the_cli_writes_results_and_a_report(tmp_path, capsys):
    path = write_suite(tmp_path / "suite", seeds=1, variants={"baseline": {}}, claims=[])
    out = tmp_path / "out"
    assert main(["ablate", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[1/1] baseline seed 0" in printed and f"wrote {out / 'report.md'}" in printed
    assert (out / "results.csv").is_file() and (out / "figures" / "accuracy.png").is_file()
    text = (out / "report.md").read_text()
    assert "maelab ablate" in text  # the command that produced it
    assert "(docs/ablation.md, *Statistics and verdicts*, says why)" in text  # a suite without claims
    assert "| **baseline** |" in text and "(baseline) |" not in text  # the baseline named once


def test_an_undefined_value_of_a_metric_no_table_shows_is_not_listed(suite_copy):
    path, out = suite_copy
    probe = out / "runs" / "linear" / "seed0" / "eval" / "probe.json"
    result = json.loads(probe.read_text())
    probe.write_text(json.dumps({**result, "top5": None, "undefined": {"top5": "top-5 of 4 classes is 100%"}}))
    collect_and_write(load_suite(path), out)
    assert "## Undefined values" not in build_report(out, figures=False).read_text()  # top-5: in results.csv only
    assert any(r.metric == "probe_top5" and r.status == "undefined" for r in read_results(out / "results.csv"))


def test_report_has_every_section_and_the_numbers_of_the_csv(suite_copy):
    _, out = suite_copy
    text = build_report(out).read_text()
    for heading in ("# Ablation: tiny", "## Results (mean ± std over seeds)", "## Differences to the baseline",
                    "## The report's claims", "## Did each feature take effect?", "## Figures", "## How this was made"):
        assert heading in text
    rows = read_results(out / "results.csv")
    probe = summarize(values_of(rows, "linear", "probe_top1"))
    assert f"{probe.mean:.2f} ± {probe.std:.2f}" in text
    linear, base = by_seed(rows, "linear", "probe_top1"), by_seed(rows, "baseline", "probe_top1")
    differences = text.split("## Differences")[1].split("## The report's claims")[0]
    d = paired(linear, base)  # the seeds pair: the paired interval judges, Welch's is shown beside it
    assert f"| linear | {probe.mean:.2f} ± {probe.std:.2f} | {d.diff:+.2f} [{d.low:+.2f}, {d.high:+.2f}] paired |" \
        in differences
    w = welch(list(linear.values()), list(base.values()))
    pairing = text.split("### Pairing")[1]
    assert f"| {d.diff:+.2f} [{d.low:+.2f}, {d.high:+.2f}] | {w.diff:+.2f} [{w.low:+.2f}, {w.high:+.2f}] |" in pairing
    shortest = mde("better", summarize([linear[k] - base[k] for k in base]).std, len(base))
    assert f"**inconclusive**: these 2 seeds could have seen a difference of {shortest:.2f} points or more" in text
    assert "random-init encoder (floor)" in text and "predicting zeros (floor)" in text
    assert "46.52 vs 40.98 (+5.54)" in text  # the report's figures beside the measurement
    claims_section = text.split("## The report's claims")[1].split("### Pairing")[0]
    claims = re.findall(r"\*\*(held|not held|inconclusive)\*\*", claims_section)
    assert len(claims) == 2
    for name in ("accuracy.png", "mask_schedules.png", "reconstructions.png"):
        assert f"figures/{name}" in text and (out / "figures" / name).stat().st_size > 5000


def test_a_folder_kept_without_checkpoints_keeps_linking_the_reconstructions_drawn_before(suite_copy):
    import shutil

    _, out = suite_copy
    build_report(out)  # drawn from the runs' checkpoints
    drawn = (out / "figures" / "reconstructions.png").read_bytes()
    for checkpoints in out.glob("runs/*/seed*/checkpoints"):  # what docs/results/<suite>/ keeps in git
        shutil.rmtree(checkpoints)
    assert "figures/reconstructions.png" in build_report(out).read_text()
    assert (out / "figures" / "reconstructions.png").read_bytes() == drawn
    (out / "figures" / "reconstructions.png").unlink()  # never drawn: nothing to link
    assert "reconstructions.png" not in build_report(out).read_text()


def test_report_rebuilds_from_the_csv_alone(suite_copy, capsys):
    _, out = suite_copy
    build_report(out, figures=False)
    first = (out / "report.md").read_text()
    (out / "report.md").unlink()
    for run in (out / "runs").iterdir():  # nothing is rerun or reread from the runs
        run.rename(out / f"moved_{run.name}")
    assert main(["report", str(out), "--no-figures"]) == 0
    assert (out / "report.md").read_text() == first


def test_report_and_ablate_bad_input_is_one_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "is not an ablation folder" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "missing does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nvariantz: {}\n")
    assert main(["ablate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "variantz" in err


def test_a_mean_leaves_out_undefined_seeds_and_says_how_many():
    assert mean_std([1.0, 3.0, 5.0], 2, undefined=2) == "3.00 ± 2.00 (mean over 3 of 5 seeds; 2 undefined)"
    assert mean_std([4.0], 1, undefined=1) == "4.0 (mean over 1 of 2 seeds; 1 undefined)"
    assert mean_std([], 2, undefined=3) == "–" and mean_std([4.0], 1) == "4.0 (1 seed)"
    assert p_value(Difference(0.0, None, None, None, None, "no spread")) == "– (no spread)" and p_value(None) == "–"


NO_EDGES = "the targets have no edges: no masked pixel of the 32 test images has a gradient magnitude above 1e-05"


def make_sharpness_undefined(out, variant, seed):
    path = out / "runs" / variant / f"seed{seed}" / "eval" / "recon.json"
    result = json.loads(path.read_text())
    path.write_text(json.dumps({**result, "sharpness_ratio": None, "undefined": {"sharpness_ratio": NO_EDGES}}))


def test_an_undefined_metric_is_a_dash_left_out_of_the_means_and_its_reason_is_listed(suite_copy):
    path, out = suite_copy
    kept = values_of(read_results(out / "results.csv"), "baseline", "sharpness")[1]  # seed 1's value
    make_sharpness_undefined(out, "baseline", 0)
    for seed in (0, 1):
        make_sharpness_undefined(out, "linear", seed)
    rows = collect_and_write(load_suite(path), out)
    undefined = [r for r in rows if r.status == "undefined"]
    assert [(r.variant, r.seed, r.metric, r.value, r.reason) for r in undefined] == [
        ("baseline", 0, "sharpness", None, NO_EDGES), ("linear", 0, "sharpness", None, NO_EDGES),
        ("linear", 1, "sharpness", None, NO_EDGES)]
    assert read_results(out / "results.csv") == rows  # the reason survives the csv
    text = build_report(out, figures=False).read_text()
    headline = text.split("## Results")[1].split("\n\n## ")[0]
    baseline_row = next(line for line in headline.splitlines() if line.startswith("| **baseline**"))
    assert baseline_row.endswith(f"| {kept:.3f} (mean over 1 of 2 seeds; 1 undefined) |")
    linear_row = next(line for line in headline.splitlines() if line.startswith("| linear |"))
    assert linear_row.endswith("| – |")  # no seed defined: a dash, not NaN or a number
    assert "## Undefined values" in text
    assert f"- sharpness ratio, baseline seed 0, linear seeds 0, 1: {NO_EDGES}" in text  # one line for one reason
    sharpness = text.split("### sharpness ratio")[1].split("\n\n##")[0]
    assert "| linear | – | – (needs 2+ seeds on both sides) | – |" in sharpness
    assert "nan" not in text.lower()


def test_report_says_which_probe_protocol_the_probe_columns_are(suite_copy):
    _, out = suite_copy
    text = build_report(out, figures=False).read_text()
    assert ("Linear probe columns: `last` (block 2, final-normed, mean-pooled; sgd lr 0.1, weight decay 0, "
            "5 epochs, batch 256)") in text  # the tiny suite's base config: probe.epochs=5
    protocols = json.loads((out / "probe_protocols.json").read_text())
    assert sorted(next(iter(protocols.values()))["variants"]) == ["baseline", "linear", "random_init"]
    (out / "probe_protocols.json").write_text(json.dumps({"`last` (...)": {"variants": ["baseline"]},
                                                          "`last4` (...)": {"variants": ["linear"]}}))
    assert "DIFFERENT protocols" in build_report(out, figures=False).read_text()


def test_a_run_folder_given_to_report_names_the_ablation_folder_it_is_in(suite_copy, capsys):
    _, out = suite_copy
    run = out / "runs" / "baseline" / "seed0"
    (out / "report.md").write_text("as it was")
    assert main(["report", str(out), str(run), "--no-figures"]) == 2
    assert f"give {out.resolve()}, the ablation folder it is in" in capsys.readouterr().err
    assert (out / "report.md").read_text() == "as it was"  # not rebuilt before the bad folder was refused


def test_a_folder_without_results_is_refused_before_any_report_is_rebuilt(suite_copy, tmp_path, capsys):
    path, out = suite_copy
    started = tmp_path / "started"  # an ablation that was stopped before its first results.csv
    started.mkdir()
    shutil.copy(out / "suite.yaml", started / "suite.yaml")
    (out / "report.md").write_text("as it was")
    assert main(["report", str(out), str(started), "--no-figures"]) == 2
    assert "has no results.csv" in capsys.readouterr().err
    assert (out / "report.md").read_text() == "as it was"


def _with_scratch(out, tuned, scratch):
    """Add fine-tune rows of the baseline (``tuned``: a value per seed, or None for none) and from-scratch rows
    (values, or None for an undefined value) to the ablation folder ``out``'s results.csv; returns its rows."""
    from maelab.ablate.results import Row, write_results

    rows = read_results(out / "results.csv")
    rows += [Row("baseline", k, "finetune_top1", v) for k, v in enumerate(tuned or [])]
    rows += [Row("scratch", k, "scratch_top1", v) if v is not None else
             Row("scratch", k, "scratch_top1", None, "undefined", reason="diverged") for k, v in enumerate(scratch)]
    write_results(out / "results.csv", rows)
    return rows


def _headline_cell(text, row_label, column):
    headline = text.split("## Results")[1].split("\n\n## ")[0]
    table = [line.strip("| ").split(" | ") for line in headline.splitlines() if line.startswith("| ")]
    row = next(r for r in table if r[0] == row_label)
    return row[table[0].index(column)], row


def test_fine_tuning_is_read_against_the_baselines_vit_trained_from_scratch_where_the_suite_ran_it(suite_copy):
    _, out = suite_copy
    rows = _with_scratch(out, [70.0, 72.0], [60.0, 61.5])
    text = build_report(out, figures=False).read_text()
    cell, row = _headline_cell(text, "ViT from scratch (the baseline's model), fine-tune floor", "fine-tune top-1 %")
    assert cell == "60.75 ± 1.06" and set(row[1:row.index(cell)]) == {"–"}  # no probe of its own
    fine_tune = text.split("### fine-tune top-1 %")[1].split("\n\n#")[0]
    d = paired(by_seed(rows, "baseline", "finetune_top1"), by_seed(rows, "scratch", "scratch_top1"))
    assert "Δ vs from scratch [95% CI]" in fine_tune
    assert f"| baseline | 71.00 ± 1.41 | – | – | {d.diff:+.2f} [{d.low:+.2f}, {d.high:+.2f}] paired |" in fine_tune
    assert "for fine-tuning the baseline's ViT trained from scratch" in text


def test_an_undefined_from_scratch_accuracy_is_still_the_fine_tuning_floor_shown_as_a_dash(suite_copy):
    _, out = suite_copy
    _with_scratch(out, [70.0, 72.0], [None, None])
    fine_tune = build_report(out, figures=False).read_text().split("### fine-tune top-1 %")[1].split("\n\n#")[0]
    assert "Δ vs from scratch [95% CI]" in fine_tune and fine_tune.rstrip().endswith("| – |")


def test_a_suite_that_ran_scratch_without_fine_tuning_shows_its_accuracy_in_a_column_of_its_own(suite_copy):
    _, out = suite_copy
    _with_scratch(out, None, [60.0, 61.5])
    text = build_report(out, figures=False).read_text()
    cell, _ = _headline_cell(text, "ViT from scratch (the baseline's model), fine-tune floor", "from scratch top-1 %")
    assert cell == "60.75 ± 1.06"


def test_without_scratch_runs_the_floor_is_the_random_init_encoder_alone(suite_copy):
    _, out = suite_copy
    text = build_report(out, figures=False).read_text()
    assert "from scratch" not in text and "the floor of the same seed: the random-init encoder)" in text


def test_a_variant_whose_overrides_change_nothing_is_named_as_such(tmp_path):
    variants = {"baseline": {}, "noop": {"overrides": ["train.tensorboard=false"]},  # the base's value already
                "gan": {"overrides": ["gan.enabled=true"]}}
    path = write_suite(tmp_path / "suite", seeds=1, variants=variants, claims=[], evals=["recon"])
    out = tmp_path / "out"
    run_suite(load_suite(path), out, "maelab ablate suite.yaml", log=lambda _: None)
    text = build_report(out, figures=False).read_text()
    assert "**noop changed nothing**: its final training loss equals the baseline's" in text
    assert "**gan changed nothing**" not in text  # the adversarial term from epoch 0 changed the loss
