import json

import pytest
import throughput
import throughput_record
import torch
from compile_stats import accumulate, difference
from throughput_record import Recorder, contender_row
from timing import Contender, alternate

TINY = ["--preset", "micro", "--batch", "16", "--steps", "1", "--variants", "pretrain", "--no-hf", "--peak-size", "256"]


def test_throughput_times_pretraining_against_the_matmul_peak(tmp_path):
    results = throughput.main([*TINY, "--rounds", "2", "--warmup", "1"])
    micro = results["presets"]["micro"]
    (row,) = micro["rows"]
    assert row["name"] == "maelab pretrain" and len(row["img_per_s_rounds"]) == 2 and row["vs_hf"] is None
    assert row["gflop_per_img"] * 1e9 == pytest.approx(3 * micro["flops"]["analytic_forward"]["total"])
    assert row["utilisation"] == pytest.approx(row["gflop_per_s"] / micro["peak_gflop_per_s"])
    assert micro["flops"]["counted_maelab"] == micro["flops"]["analytic_forward"]["total"]
    assert results["complete"] and micro["phase"] == "done" and micro["rounds_done"] == 2
    assert row["status"] == "ok" and row["first_call_s"] > 0 and row["later_warmup_s"] == []  # one warm-up call
    assert row["compile"]["recompiles"] == 0 and row["compile"]["compile_s"] in ({}, None)  # eager: nothing built


def test_the_json_is_rewritten_after_the_warm_up_and_every_round(tmp_path, monkeypatch):
    writes = []
    monkeypatch.setattr(throughput_record, "write_json",
                        lambda path, data: writes.append(json.loads(json.dumps(data, default=str))))
    throughput.main([*TINY, "--rounds", "2", "--warmup", "2", "--json", str(tmp_path / "t.json")])
    states = [(w["complete"], w["presets"]["micro"]["phase"], w["presets"]["micro"]["rounds_done"]) for w in writes]
    assert states[0] == (False, "warm-up", 0)
    assert (False, "rounds", 0) in states and (False, "rounds", 1) in states and (False, "rounds", 2) in states
    assert states[-1] == (True, "done", 2)
    compiling = next(w["presets"]["micro"] for w in writes if w["presets"]["micro"]["warming_up"])
    assert compiling["warming_up"]["name"] and compiling["warming_up"]["since_s"] >= 0  # who builds, since when
    warm = next(w["presets"]["micro"]["rows"][0] for w in writes if w["presets"]["micro"]["phase"] == "rounds")
    assert warm["img_per_s"] is None and warm["first_call_s"] > 0 and len(warm["later_warmup_s"]) == 1
    assert warm["warmup_img_per_s"] > 0  # a rough figure before any round is done


def test_a_run_stopped_in_its_second_round_leaves_the_first_rounds_figures(tmp_path):
    path = tmp_path / "t.json"
    calls = []

    def slow(i: int) -> None:
        calls.append(i)
        if len(calls) == 4:  # two warm-up calls, round 0, then the time limit strikes in round 1
            raise KeyboardInterrupt

    contenders = [Contender("a", lambda i: None, 8, 1.0), Contender("b", slow, 8, 1.0)]
    peak = Contender("peak", lambda i: None, 0, 1.0)
    results = {"machine": {}, "presets": {}}
    recorder = Recorder(results, str(path), torch.device("cpu"))
    recorder.begin("p", {}, contenders, peak, rounds=3)
    with pytest.raises(KeyboardInterrupt):
        alternate([peak, *contenders], torch.device("cpu"), 3, 1, 2, log=lambda _: None, observer=recorder)
    saved = json.loads(path.read_text())
    assert saved["complete"] is False and saved["presets"]["p"]["rounds_done"] == 1
    assert [len(row["img_per_s_rounds"]) for row in saved["presets"]["p"]["rows"]] == [1, 1]
    assert not list(tmp_path.glob(".*tmp"))  # written whole, nothing left beside it


def snap(counters=None, frames=None, recorded=None, reasons=None, phases=None):
    """A fake snapshot of torch's compile records (compile_stats.snapshot's shape)."""
    return {"counters": counters, "frame_compiles": frames, "guard_failures": reasons or {}, "phases": phases,
            "cuda_graphs": recorded}


def compiled_stats(skips=None, recorded=2):
    inductor = {} if skips is None else {"cudagraph_skips": skips}
    counters = {"stats": {"unique_graphs": 3, "calls_captured": 900}, "graph_break": {"optimizer": 2, "adam": 1},
                "inductor": inductor}
    after = snap(counters, {0: 1, 1: 3}, recorded, {"adam (adam.py:902)": ["6/0: len(grads) == 15\nmore"]},
                 {"entire_frame_compile": 70.0})
    before = snap({"stats": {"unique_graphs": 1, "calls_captured": 300}, "inductor": {}}, {0: 1},
                  0 if recorded is not None else None)
    return difference(after, before)


def cuda_graph_row(stats, device="cuda", cuda_graphs=True):
    contender = Contender("whole step, CUDA graphs", lambda i: None, 1024, 1e9, seconds=[0.01, 0.012],
                          warmup_seconds=[90.0, 0.02, 0.01], compiled=True, cuda_graphs=cuda_graphs)
    timed = {"name": contender.name, "img_per_s": 93_000.0, "img_per_s_rounds": [102_400.0, 85_333.0],
             "gflop_per_s": 93.0, "utilisation": 0.1, "vs_hf": None, "vs_hf_rounds": 3.1}
    return contender_row(contender, timed, stats, device)


def test_the_compile_figures_are_differences_of_torchs_counters():
    stats = compiled_stats(skips=0)
    assert (stats["graphs"], stats["graph_breaks"], stats["recompiles"]) == (2, 3, 2)  # frame 1: compiled 3 times
    assert stats["ops_captured"] == 600
    assert stats["recompile_reasons"] == ["adam (adam.py:902): 6/0: len(grads) == 15"]
    assert stats["cudagraph_skips"] == 0 and stats["cuda_graphs_recorded"] == 2
    assert stats["compile_s"] == {"entire_frame_compile": 70.0}
    twice = accumulate(stats, stats)
    assert twice["graphs"] == 4 and twice["compile_s"] == {"entire_frame_compile": 140.0}


def test_counters_this_torch_does_not_keep_read_as_null():
    stats = difference(snap(), snap())  # no counters object, no frame counter, no phases, no CUDA-graph trees
    assert all(stats[k] is None for k in ("graphs", "graph_breaks", "recompiles", "cudagraph_skips",
                                          "cuda_graphs_recorded", "compile_s"))
    renamed = difference(snap({"stats": {"graphs_v2": 4}}), snap({}))
    assert renamed["graphs"] is None and renamed["frames_compiled"] is None


@pytest.mark.parametrize(("stats", "device", "reason"), [
    (compiled_stats(skips=1), "cuda", "skipped CUDA graphs 1 time(s)"),
    (compiled_stats(recorded=0), "cuda", "no CUDA graph was recorded"),
    (compiled_stats(recorded=None), "cuda", "could not be read"),
    (None, "cuda", "could not be read"),
    (compiled_stats(), "cpu", "need a CUDA device"),
])
def test_a_cuda_graph_row_whose_graphs_did_not_run_is_failed_not_a_figure(stats, device, reason):
    row = cuda_graph_row(stats, device)
    assert row["status"] == "failed" and reason in row["reason"]
    assert row["img_per_s"] is None and row["img_per_s_rounds"] is None and row["vs_hf_rounds"] is None
    assert row["unverified"]["img_per_s"] == 93_000.0  # kept, out of the way
    assert row["first_call_s"] == 90.0 and row["later_warmup_s"] == [0.02, 0.01]


def test_a_cuda_graph_row_that_recorded_graphs_without_a_skip_stands():
    row = cuda_graph_row(compiled_stats(skips=None, recorded=2))
    assert row["status"] == "ok" and row["img_per_s"] == 93_000.0 and "unverified" not in row
    assert cuda_graph_row(compiled_stats(skips=4), cuda_graphs=False)["status"] == "ok"  # not meant to: not judged


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
