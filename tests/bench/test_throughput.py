import json

import pytest
import throughput


def test_throughput_times_pretraining_against_the_matmul_peak(tmp_path):
    results = throughput.main(["--preset", "micro", "--batch", "16", "--rounds", "2", "--steps", "1",
                               "--warmup", "1", "--variants", "pretrain", "--no-hf", "--peak-size", "256"])
    micro = results["presets"]["micro"]
    (row,) = micro["rows"]
    assert row["name"] == "maelab pretrain" and len(row["img_per_s_rounds"]) == 2 and row["vs_hf"] is None
    assert row["gflop_per_img"] * 1e9 == pytest.approx(3 * micro["flops"]["analytic_forward"]["total"])
    assert row["utilisation"] == pytest.approx(row["gflop_per_s"] / micro["peak_gflop_per_s"])
    assert micro["flops"]["counted_maelab"] == micro["flops"]["analytic_forward"]["total"]


@pytest.mark.slow
def test_throughput_runs_every_contender_and_checks_its_flops(tmp_path):
    out = tmp_path / "t.json"
    results = throughput.main(["--preset", "micro", "--batch", "16", "--eval-batch", "32", "--rounds", "2",
                               "--steps", "1", "--warmup", "1", "--hf-attn", "sdpa", "--peak-size", "256",
                               "--json", str(out)])
    assert json.loads(out.read_text())["presets"]["micro"]["rows"]  # written
    micro = results["presets"]["micro"]
    names = [r["name"] for r in micro["rows"]]
    assert names[:6] == ["maelab pretrain", "maelab pretrain, PyTorch's kernels", "maelab pretrain seed5",
                         "maelab pretrain GAN", "maelab features",
                         "maelab finetune"]
    for row in micro["rows"]:
        assert len(row["img_per_s_rounds"]) == 2 and row["img_per_s"] > 0 and 0 < row["utilisation"] < 1.5
    flops = micro["flops"]
    assert flops["counted_maelab"] == flops["analytic_forward"]["total"]
    if "HF ViTMAE" in names:
        assert flops["counted_hf"] == flops["analytic_forward_hf"]["total"]
        assert all(a == b for _, a, b in micro["params"])
        ours, hf = micro["rows"][0], micro["rows"][names.index("HF ViTMAE")]
        assert ours["vs_hf"] == pytest.approx(ours["img_per_s"] / hf["img_per_s"])
    assert micro["peak_gflop_per_s"] > 0
