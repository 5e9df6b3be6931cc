import json
import re

from maelab.ablate.report import build_report
from maelab.ablate.results import read_results, values_of
from maelab.ablate.stats import summarize, welch
from maelab.cli import main


def test_ablate_from_the_cli_writes_results_and_a_report(tmp_path, capsys):
    from tests.ablate.conftest import write_suite

    path = write_suite(tmp_path / "suite", seeds=1, variants={"baseline": {}}, claims=[])
    out = tmp_path / "out"
    assert main(["ablate", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[1/1] baseline seed 0" in printed and f"wrote {out / 'report.md'}" in printed
    assert (out / "results.csv").is_file() and (out / "figures" / "accuracy.png").is_file()
    assert "maelab ablate" in (out / "report.md").read_text()  # the command that produced it


def test_report_has_every_section_and_the_numbers_of_the_csv(suite_copy):
    _, out = suite_copy
    text = build_report(out).read_text()
    for heading in ("# Ablation: tiny", "## Results (mean ± std over seeds)", "## Differences to the baseline",
                    "## The report's claims", "## Did each feature take effect?", "## Figures", "## How this was made"):
        assert heading in text
    rows = read_results(out / "results.csv")
    probe = summarize(values_of(rows, "linear", "probe_top1"))
    assert f"{probe.mean:.2f} ± {probe.std:.2f}" in text
    d = welch(values_of(rows, "linear", "probe_top1"), values_of(rows, "baseline", "probe_top1"))
    assert f"{d.diff:+.2f} [{d.low:+.2f}, {d.high:+.2f}]" in text
    assert "random-init encoder (floor)" in text and "predicting zeros (floor)" in text
    assert "46.52 vs 40.98 (+5.54)" in text  # the report's figures beside the measurement
    claims = re.findall(r"\*\*(held|not held|inconclusive)\*\*", text)
    assert len(claims) == 2
    for name in ("accuracy.png", "mask_schedules.png", "reconstructions.png"):
        assert f"figures/{name}" in text and (out / "figures" / name).stat().st_size > 5000


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
    assert "holds no ablation" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nvariantz: {}\n")
    assert main(["ablate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "variantz" in err


def test_report_says_which_probe_protocol_the_probe_columns_are(suite_copy):
    _, out = suite_copy
    text = build_report(out, figures=False).read_text()
    assert ("Linear probe columns: `last` (blocks 2, final features, pool mean; sgd lr 0.1, weight decay 0, "
            "5 epochs, batch 256)") in text  # the tiny suite's base config: probe.epochs=5
    protocols = json.loads((out / "probe_protocols.json").read_text())
    assert sorted(next(iter(protocols.values()))["variants"]) == ["baseline", "linear", "random_init"]
    (out / "probe_protocols.json").write_text(json.dumps({"`last` (...)": {"variants": ["baseline"]},
                                                          "`last4` (...)": {"variants": ["linear"]}}))
    assert "DIFFERENT protocols" in build_report(out, figures=False).read_text()
