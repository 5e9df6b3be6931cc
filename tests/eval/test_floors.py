"""`maelab eval RUN`: probe, k-NN and reconstruction of the run and of its floors in one command, one table, one
JSON whose numbers are the per-protocol results'."""

import contextlib
import io
import json
import shutil

import pytest

from maelab.cli import main
from maelab.config import load_config
from maelab.engine.pretrain import pretrain
from tests.conftest import TINY
from tests.test_cli_unlabeled import make_photos

QUICK = ["probe.epochs=2", "eval.batch_size=128", "train.progress=true"]
COLUMNS = ["probe top-1 %", "k-NN top-1 %", "PSNR masked dB", "SSIM full"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("floors") / "run"
    return pretrain(load_config(None, [*TINY, "optim.epochs=1", "train.tensorboard=false", "train.keep_checkpoints=-1",
                                       f"out_dir={out}"]))


@pytest.fixture(scope="module")
def evaluated(trained, tmp_path_factory):
    """(run directory, stdout, stderr) of one `maelab eval RUN` on a copy of the trained run."""
    run_dir = shutil.copytree(trained, tmp_path_factory.mktemp("evaluated") / "run")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["eval", str(run_dir), *QUICK]) == 0
    return run_dir, out.getvalue(), err.getvalue()


def read(run_dir, name):
    return json.loads((run_dir / "eval" / f"{name}.json").read_text())


def test_maelab_eval_prints_the_demo_table_with_the_floors_and_their_differences(evaluated):
    run_dir, out, _ = evaluated
    lines = out.splitlines()
    assert lines[0].split() == " ".join(COLUMNS).split()
    labels = [line[:16].strip() for line in lines[1:6]]
    assert labels == ["pretrained", "random init", "zero prediction", "Δ random init", "Δ zero pred"]
    assert lines[3][16:48].split() == ["–", "–"]  # predicting zeros has no probe or k-NN
    assert lines[-1].startswith(f"wrote {run_dir / 'eval' / 'eval.json'} (from probe.json, knn.json, recon.json")
    tested = json.loads((run_dir / "eval" / "probe.json").read_text())["test_images"]
    assert f"probe and k-NN on {tested} test images: one image is {100 / tested:.2f} points of top-1" in out


def test_maelab_eval_shows_its_progress_as_a_plain_line_per_evaluation_in_a_log(evaluated):
    lines = [line for line in evaluated[2].splitlines() if line.startswith("evaluation: ")]
    assert [line.split(",")[0] for line in lines] == [f"evaluation: {i}/6 evaluations ({100 * i / 6:.0f}%)"
                                                      for i in range(1, 7)]
    assert "stage=knn, random init" in lines[4] and "\r" not in evaluated[2]


def test_maelab_eval_writes_one_json_whose_numbers_are_the_per_protocol_results(evaluated):
    run_dir, *_ = evaluated
    result = read(run_dir, "eval")
    pairs = {"probe_top1": ("probe", "top1"), "probe_top5": ("probe", "top5"), "knn_top1": ("knn", "top1"),
             "recon_psnr_masked": ("recon", "psnr_masked"), "recon_ssim_full": ("recon", "ssim_full"),
             "recon_sharpness_ratio": ("recon", "sharpness_ratio")}
    for metric, (name, key) in pairs.items():
        entry = result["metrics"][metric]
        assert entry["value"] == read(run_dir, name)[key]
        assert entry["random_init"] == read(run_dir, f"{name}_random_init")[key]
        assert entry["minus_random_init"] == pytest.approx(entry["value"] - entry["random_init"])
    psnr = result["metrics"]["recon_psnr_masked"]
    assert psnr["zero_pred"] == read(run_dir, "recon")["psnr_masked_zero_pred"]
    assert psnr["minus_zero_pred"] == pytest.approx(psnr["value"] - psnr["zero_pred"])
    assert "zero_pred" not in result["metrics"]["recon_sharpness_ratio"]  # recon.json has no such floor
    assert result["step"] == 4 and result["tag"] is None and result["data"]["probe"]["images"] == 64


def test_the_floors_are_computed_from_fresh_weights(evaluated):
    run_dir, *_ = evaluated
    for name in ("probe", "knn", "recon"):
        floor, trained = read(run_dir, f"{name}_random_init"), read(run_dir, name)
        assert (floor["random_init"], floor["checkpoint"], floor["step"]) == (True, "random-init", 0)
        assert trained["random_init"] is False and trained["checkpoint"].endswith("last.pt") and trained["step"] == 4
    assert read(run_dir, "recon")["psnr_masked"] != read(run_dir, "recon_random_init")["psnr_masked"]


def test_every_result_records_the_data_it_used(evaluated):
    run_dir, *_ = evaluated
    for name in ("probe", "knn", "recon", "probe_random_init"):
        data = read(run_dir, name)["data"]
        assert {k: data[k] for k in ("name", "root", "split", "images", "tag")} == {
            "name": "synthetic", "root": None, "split": "test", "images": 64, "tag": None}


def test_a_result_on_other_data_is_tagged_and_the_run_s_own_is_kept(evaluated, trained, tmp_path, capsys):
    run_dir, *_ = evaluated
    own = (run_dir / "eval" / "recon.json").read_bytes()
    assert main(["recon", str(run_dir), "data.limit_test=20"]) == 0
    assert (run_dir / "eval" / "recon.json").read_bytes() == own  # not replaced
    other = read(run_dir, "recon@test20")
    assert (other["images"], other["data"]["images"], other["data"]["tag"]) == (20, 20, "test20")
    assert read(run_dir, "recon")["images"] == 64

    copy = shutil.copytree(trained, tmp_path / "run")  # a kept checkpoint on other data: both tags
    assert main(["eval", str(copy), "--checkpoint", "epoch:1", *QUICK, "data.limit_test=20"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(
        f"wrote {copy / 'eval' / 'eval@epoch_0001@test20.json'} (from probe@epoch_0001@test20.json")
    assert read(copy, "eval@epoch_0001@test20")["metrics"]["knn_top1"]["random_init"] == \
        read(copy, "knn_random_init@test20")["top1"]
    assert not (copy / "eval" / "eval.json").exists() and not (copy / "eval" / "knn.json").exists()


@pytest.mark.parametrize("override,says", [
    ("probe.epochs=x", "'probe.epochs'"),
    ("probe.nothing=1", "probe.nothing"),
    ("data.limit_test=0", "data.limit_test"),
])
def test_a_bad_override_is_one_line_exit_2_and_writes_nothing(trained, tmp_path, capsys, override, says):
    run_dir = shutil.copytree(trained, tmp_path / "run")
    assert main(["eval", str(run_dir), override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("maelab: error: ") and says in err[0]
    assert not (run_dir / "eval").exists()


def test_an_unlabeled_run_gets_reconstruction_and_one_line_saying_probe_and_knn_need_labels(tmp_path, capsys):
    photos = make_photos(tmp_path / "photos")
    out = tmp_path / "run"
    assert main(["pretrain", "data.name=folder", f"data.root={photos}", "model.preset=micro", "optim.batch_size=8",
                 "optim.epochs=1", "train.progress=false", "train.tensorboard=false", f"out_dir={out}"]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "recon.limit=10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == "PSNR masked dB SSIM full".split()
    notes = [line for line in lines if "probe and k-NN" in line]
    assert len(notes) == 1 and notes[0].startswith("probe and k-NN skipped: data.root=")
    assert "each of probe and k-NN needs labels" in notes[0]
    result = read(out, "eval")
    assert result["metrics"]["recon_psnr_masked"]["value"] == read(out, "recon")["psnr_masked"]
    probe = result["metrics"]["probe_top1"]
    assert probe["value"] is None and "needs labels" in probe["undefined"]["value"]
    assert sorted(p.name for p in (out / "eval").glob("*.json")) == ["eval.json", "recon.json",
                                                                    "recon_random_init.json"]


def test_an_encoder_below_its_random_init_floor_is_said_to_be_so_with_its_steps(evaluated):
    run_dir, out, _ = evaluated
    below = [name for name in ("probe", "knn")
             if read(run_dir, name)["top1"] < read(run_dir, f"{name}_random_init")["top1"]]
    assert ("below the random-init floor on" in out) == bool(below)  # this tiny run's own numbers decide
    from maelab.eval.floors import below_floor_note

    (note,) = below_floor_note({"probe top-1 %": -12.5, "k-NN top-1 %": 0.4, "PSNR masked dB": -1.0}, 180)
    assert note.startswith("below the random-init floor on probe top-1 %: ") and "180 optimizer steps" in note
    assert below_floor_note({"probe top-1 %": 2.0, "k-NN top-1 %": None}, 180) == []
