"""maelab report DIR... --page FILE: one page that opens with every claim's verdict, then each suite's report."""

import json
import re
import shutil

import yaml

from maelab.ablate.judge import judge
from maelab.ablate.page import MARK
from maelab.ablate.results import read_results
from maelab.ablate.runner import saved_suite
from maelab.cli import main


def second_suite(out, tmp_path):
    """The finished tiny suite under another name and with claims of its own: a second ablation folder (the same
    claims would share rows: test_page_budgets.py)."""
    other = tmp_path / "other"
    shutil.copytree(out, other)
    saved = yaml.safe_load((other / "suite.yaml").read_text())
    claims = [{**claim, "text": claim["text"] + " again"} for claim in saved["claims"]]
    (other / "suite.yaml").write_text(yaml.safe_dump({**saved, "name": "tiny_again", "claims": claims}))
    return other


def test_a_report_opens_with_the_answer_table_of_its_claims(suite_copy):
    _, out = suite_copy
    assert main(["report", str(out)]) == 0
    text = (out / "report.md").read_text()
    answer = text.split("## The answer")[1].split("\n## ")[0]
    assert text.index("## The answer") < text.index("## Results (mean ± std over seeds)")
    spec, rows = saved_suite(out), read_results(out / "results.csv")
    for claim in spec.claims:
        assert f"| {claim.text} (" in answer and f"**{judge(claim, spec, rows).verdict}**" in answer


def test_the_page_opens_with_every_suites_claims_then_each_report_with_its_figures(suite_copy, tmp_path, capsys):
    _, out = suite_copy
    other = second_suite(out, tmp_path)
    page = tmp_path / "docs" / "results.md"
    page.parent.mkdir()
    assert main(["report", str(out), str(other), "--page", str(page), "--title", "What holds"]) == 0
    assert f"wrote {page}" in capsys.readouterr().out
    text = page.read_text()
    assert text.startswith(MARK + "\n# What holds")
    first_table = text.split("| suite | claim |")[1].split("\n\n")[0]
    verdicts = re.findall(r"^\| (tiny|tiny_again) \|.*\*\*(held|not held|inconclusive)\*\*", first_table, re.M)
    assert len(verdicts) == 4  # two claims of each suite
    assert text.index("| suite | claim |") < text.index("## Ablation: tiny")  # the reports follow, a level down
    assert "\n# Ablation" not in text
    links = re.findall(r"\]\((results/[^)]+\.png)\)", text)
    assert {link.split("/")[1] for link in links} == {"tiny", "tiny_again"}
    assert all((page.parent / link).is_file() for link in links)


def test_the_page_is_rewritten_but_a_file_it_did_not_write_is_never_overwritten(suite_copy, tmp_path, capsys):
    _, out = suite_copy
    page = tmp_path / "results.md"
    assert main(["report", str(out), "--page", str(page), "--no-figures"]) == 0
    assert main(["report", str(out), "--page", str(page), "--no-figures"]) == 0  # its own page: rewritten
    page.write_text("# notes by hand\n")
    capsys.readouterr()
    (out / "report.md").unlink()
    assert main(["report", str(out), "--page", str(page), "--no-figures"]) == 2
    assert not (out / "report.md").exists()  # refused before anything was written
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "was not written by `maelab report --page`" in err
    assert page.read_text() == "# notes by hand\n"


def test_two_folders_of_the_same_suite_are_refused_on_one_page(suite_copy, tmp_path, capsys):
    _, out = suite_copy
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (out / "report.md").write_text("as it was")
    assert main(["report", str(out), str(copy), "--page", str(tmp_path / "p.md"), "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert "same name (tiny)" in err and str(copy) in err and not (tmp_path / "p.md").exists()
    assert (out / "report.md").read_text() == "as it was"  # refused before any report was rebuilt


def test_a_title_without_a_page_is_refused_and_nothing_is_rebuilt(suite_copy, capsys):
    _, out = suite_copy
    (out / "report.md").write_text("as it was")
    assert main(["report", str(out), "--title", "Mine", "--no-figures"]) == 2
    assert "--title" in capsys.readouterr().err and (out / "report.md").read_text() == "as it was"


def test_the_page_names_each_folder_as_given_and_paths_under_the_current_folder_relative_to_it(suite_copy, tmp_path,
                                                                                              monkeypatch):
    _, out = suite_copy
    invocations = json.loads((out / "environment.json").read_text())
    suite_file = out.parent / "suites" / "s.yaml"
    invocations.append({**invocations[-1], "command": f"maelab ablate {suite_file} --out {out.resolve()}"})
    (out / "environment.json").write_text(json.dumps(invocations))
    monkeypatch.chdir(out.parent)
    assert main(["report", out.name, "--page", "results.md", "--no-figures"]) == 0
    text = (tmp_path / "results.md").read_text()
    assert str(out.resolve()) in (out / "report.md").read_text()  # the folder's own report keeps the command
    assert str(out.resolve()) not in text and f"maelab ablate suites/s.yaml --out {out.name}`" in text


def test_a_folder_as_the_page_is_one_clear_error(suite_copy, tmp_path, capsys):
    _, out = suite_copy
    assert main(["report", str(out), "--page", str(tmp_path), "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and "Traceback" not in err


def test_a_suite_folder_kept_beside_the_page_has_its_figures_linked_where_they_are(suite_copy, tmp_path):
    _, out = suite_copy
    kept = tmp_path / "docs" / "results" / "tiny"  # docs/results/<suite>: the results committed with the page
    shutil.copytree(out, kept)
    assert main(["report", str(kept), "--page", str(tmp_path / "docs" / "results.md")]) == 0
    text = (tmp_path / "docs" / "results.md").read_text()
    links = re.findall(r"\]\((results/[^)]+\.png)\)", text)
    assert links and all(link.startswith("results/tiny/figures/") for link in links)
    assert all((tmp_path / "docs" / link).is_file() for link in links)
    assert not list(kept.glob("*.png"))  # no second copy beside the suite's own
