import contextlib
import io
import json
import shutil

import pytest
import torch

from maelab.ablate.results import read_status, write_status
from maelab.ablate.reuse import REUSE_NAME, pretraining_key
from maelab.cli import main
from maelab.config import load_config
from tests.ablate.conftest import write_suite

# the tiny suite's baseline again (under another suite name and with another probe), and a run that differs
OTHER = {"name": "other", "seeds": 1, "baseline": "same", "eval_overrides": ["probe.epochs=3"],
         "variants": {"same": {}, "longer": {"overrides": ["optim.epochs=3"]}},
         "claims": [{"text": "more epochs help", "variant": "longer", "metric": "knn_top1", "kind": "better"}]}


@pytest.fixture(scope="module")
def reused(finished_suite, tmp_path_factory):
    """(source folder, folder of the OTHER suite run with --reuse source)."""
    _, source = finished_suite
    root = tmp_path_factory.mktemp("reuse")
    out = root / "out"
    with contextlib.redirect_stdout(io.StringIO()) as said:
        assert main(["ablate", str(write_suite(root / "other", **OTHER)), "--out", str(out), "--reuse",
                     str(source)]) == 0
    (out / "said.txt").write_text(said.getvalue())
    return source, out


def test_a_run_identical_to_one_trained_elsewhere_copies_its_pretraining_and_still_evaluates(reused):
    source, out = reused
    same, trained_there = out / "runs/same/seed0", source / "runs/baseline/seed0"
    assert read_status(same)["reused_from"] == str(trained_there.resolve())
    # not trained again: a new run would log its own timings
    assert (same / "metrics.jsonl").read_bytes() == (trained_there / "metrics.jsonl").read_bytes()
    assert (same / "run_info.json").read_bytes() == (trained_there / "run_info.json").read_bytes()  # where it trained
    mine = torch.load(same / "checkpoints/last.pt", weights_only=True)
    theirs = torch.load(trained_there / "checkpoints/last.pt", weights_only=True)
    assert all(torch.equal(mine["model"][k], theirs["model"][k]) for k in theirs["model"])
    assert mine["config"]["out_dir"] == str(same) and mine["config"]["name"] == "other-same"
    # the evaluations ran here, on the copied encoder: k-NN is deterministic, so it reads the same
    knn, knn_there = (json.loads((run / "eval/knn.json").read_text()) for run in (same, trained_there))
    assert (knn["top1"], knn["checkpoint"]) == (knn_there["top1"], str(same / "checkpoints/last.pt"))
    assert "Pretraining reused" in (out / "report.md").read_text()
    assert f"--reuse: 1 of the 2 pretrainings left can copy a finished one from {source.resolve()}" in (
        out / "said.txt").read_text()


def test_a_copy_of_a_copy_names_the_run_where_the_pretraining_was_trained(reused, tmp_path):
    source, out = reused
    again = tmp_path / "again"
    assert main(["ablate", str(write_suite(tmp_path / "s", **ALONE)), "--out", str(again), "--reuse", str(out)]) == 0
    assert read_status(again / "runs/same/seed0")["reused_from"] == str((source / "runs/baseline/seed0").resolve())


def test_a_run_with_other_training_settings_is_trained_not_reused(reused):
    _, out = reused
    longer = out / "runs/longer/seed0"
    assert "reused_from" not in read_status(longer)
    epochs = [json.loads(line)["epoch"] for line in (longer / "metrics.jsonl").read_text().splitlines()
              if json.loads(line).get("kind") == "epoch"]
    assert epochs == [0, 1, 2]


def test_the_pretraining_key_ignores_names_folders_and_evaluation_settings_only():
    base = load_config(None, ["data.name=synthetic"])
    renamed = load_config(None, ["data.name=synthetic", "name=x", "out_dir=/elsewhere", "probe.epochs=7",
                                 "knn.k=5", "recon.limit=10", "finetune.epochs=1"])
    assert pretraining_key(renamed) == pretraining_key(base)
    for change in ("optim.lr=0.01", "train.seed=1", "mask.ratio=0.5", "aug.preset=none", "model.depth=2"):
        assert pretraining_key(load_config(None, ["data.name=synthetic", change])) != pretraining_key(base), change


# the tiny suite's baseline alone, under another name: reused from the tiny suite, or trained when it cannot be
ALONE = {**OTHER, "variants": {"same": {}}, "claims": []}


def test_a_source_run_cut_short_or_unreadable_is_not_reused_and_the_run_trains(suite_copy, tmp_path, capsys):
    _, source = suite_copy
    last = source / "runs/baseline/seed0/checkpoints/last.pt"
    state = torch.load(last, weights_only=True)
    torch.save({**state, "epoch": state["epoch"] - 1}, last)  # seed 0: as a run cut short would have left it
    (source / "runs/baseline/seed1/ablate.json").write_text('{"pretrained": ')  # seed 1: a torn status file
    out = tmp_path / "alone"
    assert main(["ablate", str(write_suite(tmp_path / "s", **{**ALONE, "seeds": 2})), "--out", str(out),
                 "--reuse", str(source)]) == 0
    assert f"{source / 'runs/baseline/seed1'} is skipped" in capsys.readouterr().err
    for seed in (0, 1):
        status = read_status(out / f"runs/same/seed{seed}")
        assert status["status"] == "done" and "reused_from" not in status


@pytest.mark.parametrize(("reuse", "words"), [
    ("nowhere", "does not exist"), ("runs/baseline/seed0", "the ablation folder it is in"),
    ("", "an empty name"), (".", "not an ablation folder")])
def test_a_reuse_folder_that_is_no_ablation_is_one_clear_error_and_nothing_is_written(finished_suite, tmp_path,
                                                                                       capsys, monkeypatch, reuse,
                                                                                       words):
    path, source = finished_suite
    monkeypatch.chdir(source if reuse.startswith("runs") else tmp_path)
    out = tmp_path / "out"
    assert main(["ablate", str(path), "--out", str(out), "--reuse", reuse]) == 2
    assert words in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("inside, words", [("", "is this ablation's own --out folder"),
                                            ("runs/baseline/seed0", "is inside this ablation's own --out folder")])
def test_the_suites_own_folder_or_a_run_in_it_is_refused_as_a_reuse_source_and_left_as_it_was(
        finished_suite, capsys, inside, words):
    path, source = finished_suite
    before = sorted(p.name for p in source.iterdir())
    assert main(["ablate", str(path), "--out", str(source), "--reuse", str(source / inside)]) == 2
    assert words in capsys.readouterr().err
    assert sorted(p.name for p in source.iterdir()) == before and REUSE_NAME not in before


def test_the_reuse_line_counts_only_the_pretrainings_left_to_do(reused, tmp_path, capsys):
    source, done = reused
    out = tmp_path / "out"
    shutil.copytree(done, out)
    same = out / "runs/same/seed0"
    write_status(same, {**read_status(same), "status": "failed"})  # its evaluations failed, its pretraining is done
    (out / "runs/longer/seed0/ablate.json").unlink()  # a pretraining left to do, which the source does not hold
    assert main(["ablate", str(write_suite(tmp_path / "other", **OTHER)), "--out", str(out)]) == 0
    assert f"--reuse: 0 of the 1 pretraining left can copy a finished one from {source.resolve()}" in (
        capsys.readouterr().out)
