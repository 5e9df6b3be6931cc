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
