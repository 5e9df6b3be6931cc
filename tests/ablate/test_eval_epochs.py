"""A suite's ``eval_epochs``: every run evaluated on the checkpoints it kept, recorded in results.csv as
<metric>@epoch_NNNN, drawn by the report as accuracy-versus-epoch curves."""

import csv
import json

import pytest
import yaml

from maelab.ablate import load_suite, run_suite
from maelab.ablate.report import build_report
from maelab.ablate.results import at_epoch, run_dir_of, split_epoch
from maelab.ablate.runner import SUITE_NAME, save_suite
from maelab.config import to_dict
from maelab.errors import ConfigError
from tests.ablate.conftest import write_suite

KEEP = ["train.keep_checkpoints=-1"]


@pytest.fixture(scope="module")
def epoch_suite(tmp_path_factory):
    """Two variants, one seed, k-NN at epochs 1 and 2 (the last) as well as on last.pt."""
    root = tmp_path_factory.mktemp("epochs")
    path = write_suite(root / "suite", seeds=1, evals=["knn"], floor=False, overrides=KEEP, eval_epochs=[1, 2],
                       claims=[])
    out = root / "out"
    run_suite(load_suite(path), out, "maelab ablate suite.yaml", log=lambda _: None)
    with (out / "results.csv").open() as f:
        return out, {(r["variant"], r["metric"]): r for r in csv.DictReader(f)}


def test_each_run_is_evaluated_at_the_asked_epochs_from_its_kept_checkpoints(epoch_suite):
    out, rows = epoch_suite
    for variant in ("baseline", "linear"):
        run_dir = run_dir_of(out, variant, 0)
        for epoch in (1, 2):
            row = rows[(variant, f"knn_top1@epoch_000{epoch}")]
            result = json.loads((run_dir / "eval" / f"knn@epoch_000{epoch}.json").read_text())
            assert row["status"] == "done" and float(row["value"]) == result["top1"]
            assert result["checkpoint"].endswith(f"epoch_000{epoch}.pt") and result["step"] == 3 * epoch
        # epoch 2 is the last: the same weights as last.pt, so the same k-NN accuracy
        assert rows[(variant, "knn_top1@epoch_0002")]["value"] == rows[(variant, "knn_top1")]["value"]


def test_the_report_tables_and_draws_accuracy_versus_epoch(epoch_suite):
    out, _ = epoch_suite
    text = build_report(out).read_text()
    assert "## Accuracy by epoch" in text and "| variant | epoch 1 | epoch 2 |" in text
    assert "figures/accuracy_by_epoch_knn_top1.png" in text
    assert (out / "figures" / "accuracy_by_epoch_knn_top1.png").stat().st_size > 0


def test_eval_epochs_the_runs_would_not_keep_are_refused_before_anything_runs(tmp_path):
    path = write_suite(tmp_path / "suite", seeds=1, eval_epochs=[1])
    with pytest.raises(ConfigError, match=r"variant 'baseline': eval_epochs \[1\] would not be kept .*"
                                          r"train.keep_checkpoints=0 keep none\): add train.keep_checkpoints=-1"):
        load_suite(path)
    path = write_suite(tmp_path / "suite", seeds=1, eval_epochs=[1], overrides=[*KEEP, "train.save_every=2"])
    with pytest.raises(ConfigError, match=r"keep \[2\]\)"):
        load_suite(path)


def test_an_ablation_folder_saved_before_eval_epochs_existed_is_still_the_same_suite(tmp_path):
    suite = load_suite(write_suite(tmp_path / "suite", seeds=1))
    older = {k: v for k, v in to_dict(suite.spec).items() if k != "eval_epochs"}
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / SUITE_NAME).write_text(yaml.safe_dump(older))
    save_suite(suite, tmp_path / "out")  # not refused as "another suite"


def test_epoch_metric_names_round_trip():
    assert at_epoch("probe_top1", 10) == "probe_top1@epoch_0010"
    assert split_epoch("probe_top1@epoch_0010") == ("probe_top1", 10)
    assert split_epoch("probe_top1") == ("probe_top1", None) and at_epoch("knn_top1", None) == "knn_top1"
