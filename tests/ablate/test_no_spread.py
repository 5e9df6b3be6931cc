"""A verdict needs spread: tied accuracies (every seed gives the same difference) decide nothing, and the report says
why, with the test set's resolution and the seeds that would decide (issue 29). Built from a results.csv, no run."""

import json
import math

import yaml

from maelab.ablate.judge import NO_BASIS, judge
from maelab.ablate.power import ZERO_SPREAD, mde, seeds_needed
from maelab.ablate.report import build_report
from maelab.ablate.report_claims import seeds_cell
from maelab.ablate.report_resolution import IMAGES_NAME, resolution
from maelab.ablate.results import Row, write_results
from maelab.ablate.stats import INCONCLUSIVE, PAIRED, WELCH, paired
from maelab.ablate.suite import ClaimSpec, SuiteSpec, VariantSpec

SAME = {"text": "the GAN leaves the probe unchanged", "variant": "gan", "metric": "probe_top1", "kind": "same",
        "margin": 1.0}
BETTER = {"text": "the GAN helps k-NN", "variant": "gan", "metric": "knn_top1", "kind": "better"}
PROBE = {"baseline": [45.2, 46.0], "gan": [45.2, 46.0]}  # 500 test images: tied to the image on both seeds
KNN = {"baseline": [30.0, 31.0, 29.0], "gan": [32.0, 34.0, 31.5]}  # a normal case: differences 2.0, 3.0, 2.5


def _rows():
    rows = []
    for metric, values in (("probe_top1", PROBE), ("knn_top1", KNN)):
        rows += [Row(v, k, metric, x, run_dir=f"runs/{v}/seed{k}")
                 for v, xs in values.items() for k, x in enumerate(xs)]
    return rows


def _ablation(tmp_path, recorded=True):
    """An ablation folder holding the suite, results.csv and (``recorded``) the probe's eval JSONs of 500 images."""
    out = tmp_path / "out"
    out.mkdir()
    spec = {"name": "gan", "baseline": "baseline", "seeds": 3, "evals": ["probe", "knn"],
            "variants": {"baseline": {}, "gan": {"overrides": ["gan.enabled=true"]}}, "claims": [SAME, BETTER]}
    (out / "suite.yaml").write_text(yaml.safe_dump(spec))
    write_results(out / "results.csv", _rows())
    for variant in PROBE if recorded else ():
        for seed in (0, 1):
            folder = out / "runs" / variant / f"seed{seed}" / "eval"
            folder.mkdir(parents=True)
            (folder / "probe.json").write_text(json.dumps({"top1": PROBE[variant][seed], "test_images": 500}))
    return out


def _claim_row(text, claim):
    section = text.split("## The suite's claims")[1].split("### Pairing")[0]
    return next(line for line in section.splitlines() if line.startswith(f"| {claim}"))


def test_two_seeds_of_tied_probe_accuracies_are_inconclusive_and_the_report_says_why(tmp_path):
    out = _ablation(tmp_path)
    text = build_report(out, figures=False).read_text()
    row = _claim_row(text, SAME["text"])
    welch_sd = math.sqrt(2 * summary_var(PROBE["gan"]))
    need = seeds_needed("same", welch_sd, 1.0, WELCH)
    assert "+0.00 [–: no spread] paired" in row and "**held**" not in row
    assert (f"**inconclusive**: the 2 seeds gave identical differences (+0 each): zero spread, so the interval has "
            f"no width and decides nothing; one test image is 0.2 points of accuracy (500 test images); about {need} "
            f"seeds would decide ±1.00 points at 80% power, from each variant's spread over seeds (Welch's sd "
            f"{welch_sd:.3g}), as the differences have none | – (no spread) | {need} for ±1.00 (from each variant's "
            "spread: the differences have none) |") in row
    answer = text.split("## The answer")[1].split("\n\n##")[0]
    assert "| +0.00 [–: no spread] paired | **inconclusive** | – (no spread) |" in answer
    differences = text.split("### linear probe top-1 %")[1].split("\n\n#")[0]
    assert "| gan | 45.60 ± 0.57 | +0.00 [–: no spread] paired | – (no spread) |" in differences
    assert json.loads((out / IMAGES_NAME).read_text()) == {"probe_top1": [500]}  # kept for rebuilds without runs
    assert "0.00 [+0.00, +0.00]" not in text and "±0.00" not in text


def test_without_recorded_test_images_the_resolution_is_said_generically(tmp_path):
    text = build_report(_ablation(tmp_path, recorded=False), figures=False).read_text()
    assert "one test image is 100 / N points of accuracy on N test images (the runs did not record N)" in text
    assert resolution("psnr_masked", {"psnr_masked": [500]}) == ""  # not an accuracy: no such step
    assert resolution("probe_top1@epoch_0010", {"probe_top1@epoch_0010": [200, 500]}) == \
        "one test image is 0.2 to 0.5 points of accuracy (200 to 500 test images)"


def test_a_claim_with_spread_is_judged_as_before(tmp_path):
    text = build_report(_ablation(tmp_path), figures=False).read_text()
    row = _claim_row(text, BETTER["text"])
    gan, base = (dict(enumerate(KNN[v])) for v in ("gan", "baseline"))
    d = paired(gan, base)
    shortest = mde("better", 0.5, 3)  # the differences 2.0, 3.0, 2.5 have sd 0.5
    assert d.decides and d.low > 0
    assert f"| {d.diff:+.2f} [{d.low:+.2f}, {d.high:+.2f}] paired | **held** | {shortest:.2f} |" in row


def test_a_welch_comparison_without_spread_on_either_side_has_no_power_and_says_so():
    spec = SuiteSpec(baseline="baseline", variants={"baseline": VariantSpec(), "gan": VariantSpec()})
    rows = [Row("baseline", k, "probe_top1", 48.0) for k in (0, 1)] + \
           [Row("gan", k, "probe_top1", 50.0) for k in (2, 3)]  # no seed in common: Welch judges
    j = judge(ClaimSpec(text="t", variant="gan", kind="better"), spec, rows)
    assert j.comparison.test == WELCH and not j.comparison.used.decides and j.verdict == INCONCLUSIVE
    assert (j.mde, j.seeds_needed) == (None, None)
    assert j.undefined == {"mde": ZERO_SPREAD, "seeds_needed": NO_BASIS}
    assert seeds_cell(j, 2) == f"– ({NO_BASIS})"


def test_identical_paired_differences_plan_their_seeds_from_each_variants_spread():
    spec = SuiteSpec(baseline="baseline", variants={"baseline": VariantSpec(), "gan": VariantSpec()})
    rows = [Row(v, k, "probe_top1", x) for v, xs in PROBE.items() for k, x in enumerate(xs)]
    j = judge(ClaimSpec(**SAME), spec, rows)
    assert (j.comparison.test, j.verdict, j.mde) == (PAIRED, INCONCLUSIVE, None)
    assert j.seeds_needed == seeds_needed("same", math.sqrt(2 * summary_var(PROBE["gan"])), 1.0, WELCH)
    assert j.basis.startswith("each variant's spread over seeds") and j.undefined == {"mde": ZERO_SPREAD}


def summary_var(values):
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)

