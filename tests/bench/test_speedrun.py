import json

import speedrun


def test_speedrun_smoke_pretrains_then_probes_and_finetunes(tmp_path):
    out = tmp_path / "speedrun.json"
    results = speedrun.main(["--smoke", "--out", str(tmp_path / "runs"), "--json", str(out),
                             "--set", "data.synthetic_train=128", "data.synthetic_test=64"])
    assert [r["recipe"] for r in results] == ["probe", "finetune"]
    assert json.loads(out.read_text()) == results
    for r in results:
        assert 0.0 <= r["top1"] <= 100.0 and r["total_s"] >= r["pretrain_s"] > 0
        assert r["met"] is False  # one epoch of the micro model on 128 images reaches no goal
        run_dir = tmp_path / "runs" / r["recipe"]
        assert (run_dir / "checkpoints").is_dir()
        assert (run_dir / "eval" / f"{r['recipe']}.json").is_file()  # the real command wrote its result


def test_the_budget_takes_the_whole_epochs_that_fit_and_refuses_less_than_one():
    import budget
    import pytest

    from maelab.errors import UserError

    assert budget.epochs_within(25, 1100, 50_000) == 32  # 25 min x 60 x 1,100 img/s x 0.97 = 32.0 epochs
    assert budget.epochs_within(1, 1000, 50_000) == 1
    with pytest.raises(UserError, match=r"less than one epoch .* give --minutes 0.9 or more"):
        budget.epochs_within(0.5, 1000, 50_000)


def test_a_budgeted_smoke_run_pretrains_the_fitted_epochs_then_probes_and_its_floor(tmp_path, monkeypatch):
    import budget
    import yaml

    rates = []
    monkeypatch.setattr(budget, "measure_img_per_s", lambda cfg, n: rates.append(n) or 128 * 3 / 60 / 0.97)
    out = tmp_path / "budget.json"
    [record] = speedrun.main(["--smoke", "--minutes", "1", "--out", str(tmp_path / "runs"), "--json", str(out),
                              "--probes", "default", "--set", "data.synthetic_train=128", "data.synthetic_test=64"])
    assert rates == [128] and record["epochs"] == 3  # a minute holds 3 epochs of 128 images at that rate
    assert json.loads(out.read_text()) == record
    saved = yaml.safe_load((tmp_path / "runs").glob("budget1m-*/config.yaml").__next__().read_text())
    assert saved["optim"]["epochs"] == 3
    for key in ("probe_default_top1", "knn_top1", "floor_probe_default_top1", "floor_knn_top1"):
        assert 0 <= record[key] <= 100, key
    best = record["probe_default_best"]  # every block and concatenation was probed; the best is kept
    assert best["top1"] >= record["probe_default_top1"] and best["name"] in {"last", "block1", "block2", "last2"}
    assert record["pretrain_s"] > 0 and record["img_per_s"] > 0


def test_keep_epochs_pretrains_the_configs_epochs_without_calibrating_and_says_if_they_held_the_budget(
        tmp_path, monkeypatch):
    import budget

    monkeypatch.setattr(budget, "measure_img_per_s", lambda cfg, n: (_ for _ in ()).throw(AssertionError("called")))
    [record] = speedrun.main(["--smoke", "--minutes", "5", "--keep-epochs", "--out", str(tmp_path / "runs"),
                              "--probes", "default", "--set", "data.synthetic_train=128", "data.synthetic_test=64",
                              "--set-pretrain", "optim.epochs=2"])
    assert record["epochs"] == 2 and record["epochs_from"] == "config" and record["calibration_img_per_s"] is None
    assert record["within_budget"] is True  # two epochs of 128 micro images take seconds, not 5 minutes


def test_a_budgeted_run_cut_short_resumes_from_its_checkpoint_then_is_evaluated(tmp_path):
    import yaml

    from maelab.engine.checkpoint import checkpoint_path, load_checkpoint

    common = ["--smoke", "--minutes", "5", "--keep-epochs", "--out", str(tmp_path / "runs"), "--probes", "default",
              "--set", "data.synthetic_train=128", "data.synthetic_test=64"]
    speedrun.main([*common, "--set-pretrain", "optim.epochs=3", "train.stop_after_epochs=1"])  # "killed" at 1 of 3
    run_dir = next((tmp_path / "runs").glob("budget5m-*"))
    assert load_checkpoint(checkpoint_path(run_dir))["step"] == 2  # 128 images, batch 64: one epoch is 2 steps
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["optim"]["epochs"] == 3
    [record] = speedrun.main([*common, "--set-pretrain", "optim.epochs=3", "--resume", str(run_dir)])
    assert load_checkpoint(checkpoint_path(run_dir))["step"] == 6 and record["resumed"] is True
    assert "within_budget" not in record and 0 <= record["probe_default_top1"] <= 100
