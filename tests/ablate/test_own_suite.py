"""A suite of one's own (no ``report_claims: true``) speaks of its own claims, not the report's; a run on an
unlabeled image folder shows training images, and the report says so (issue 31)."""

from pathlib import Path

import pytest
import yaml
from PIL import Image

from maelab.ablate import load_suite
from maelab.ablate.page import build_page
from maelab.ablate.report import build_report
from maelab.ablate.report_resolution import shown_split
from maelab.ablate.runner import save_suite
from maelab.cli import main
from maelab.errors import ConfigError
from tests.ablate.conftest import write_suite
from tests.conftest import REPO


def png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 40, 40)).save(path)


def own(out: Path) -> None:
    """The finished tiny suite's folder, as if its suite were one's own (the key that says otherwise dropped)."""
    saved = yaml.safe_load((out / "suite.yaml").read_text())
    saved.pop("report_claims")
    (out / "suite.yaml").write_text(yaml.safe_dump(saved))


def test_a_suite_of_ones_own_speaks_of_its_own_claims(suite_copy, tmp_path):
    _, out = suite_copy
    own(out)
    text = build_report(out, figures=False).read_text()
    assert "report's" not in text and "## The suite's claims" in text
    assert "Each claim of this suite, judged by" in text
    assert "| claim | claimed figures | maelab: Δ [95% CI] |" in text
    assert "46.52 vs 40.98 (+5.54)" in text  # the figures the claim gives, under a neutral head
    page = build_page([out], tmp_path / "page.md").read_text()
    assert "# Results: the suites' claims, measured" in page and "report's" not in page.split("## Ablation")[0]


def test_the_repos_suites_keep_the_reports_wording(suite_copy):
    _, out = suite_copy
    text = build_report(out, figures=False).read_text()
    assert "## The report's claims" in text and "| claim | report's figures |" in text
    assert all(load_suite(p).spec.report_claims for p in (REPO / "configs" / "suites").glob("*.yaml"))


def test_the_wording_key_does_not_make_a_folder_another_suites(tmp_path):
    out = tmp_path / "out"
    save_suite(load_suite(write_suite(tmp_path / "a", report_claims=False)), out)
    save_suite(load_suite(write_suite(tmp_path / "b")), out)  # the same suite, said to be the report's: accepted
    assert yaml.safe_load((out / "suite.yaml").read_text())["report_claims"] is True


def test_a_run_on_an_unlabeled_folder_shows_training_images(tmp_path):
    flat, labelled = tmp_path / "flat", tmp_path / "labelled"
    png(flat / "a.png")
    png(labelled / "train" / "cat" / "a.png")
    for name, data, split in (("u", {"name": "folder", "root": str(flat)}, "training"),
                              ("l", {"name": "folder", "root": str(labelled)}, "test"),
                              ("c", {"name": "cifar10", "root": None}, "test")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(yaml.safe_dump({"data": data}))
        assert shown_split(tmp_path / name) == split
    assert shown_split(tmp_path / "missing") == "test"


def test_a_suite_on_a_folder_that_does_not_exist_is_refused_before_anything_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_suite(tmp_path / "s", overrides=["data.name=folder", "data.root=my_images", "data.image_size=32"],
                       evals=["recon"], claims=[])
    assert main(["ablate", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "variant 'baseline' pretrains on data.root=my_images, which does not exist" in err[0]
    assert f"read from the folder maelab runs in, {tmp_path}" in err[0] and "nothing was run" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_typo_in_a_suite_file_is_said_to_be_in_the_suite(tmp_path):
    path = write_suite(tmp_path / "s", variants={"baseline": {}, "linear": {"overrides": ["mask.mn=0.2"]}})
    with pytest.raises(ConfigError, match=r"variant 'linear': unknown config key 'mask\.mn' in the suite's overrides"):
        load_suite(path)
