import csv
import json
import shutil

import pytest

from maelab.ablate import load_suite, run_suite
from maelab.ablate.results import read_status, run_dir_of
from maelab.ablate.runner import plan_runs, save_suite, saved_suite
from maelab.config import load_config
from maelab.engine import pretrain as pretrain_module
from maelab.engine.checkpoint import checkpoint_path, load_checkpoint
from maelab.errors import UserError
from maelab.eval import commands
from tests.ablate.conftest import write_suite


def csv_rows(out):
    with (out / "results.csv").open() as f:
        return list(csv.DictReader(f))


def test_every_variant_and_seed_has_its_run_and_metrics(finished_suite):
    _, out = finished_suite
    rows = csv_rows(out)
    for variant in ("baseline", "linear"):
        for seed in ("0", "1"):
            metrics = {r["metric"] for r in rows if r["variant"] == variant and r["seed"] == seed}
            assert {"probe_top1", "knn_top1", "psnr_masked", "ssim_full", "sharpness", "final_loss",
                    "mask_ratio_seen"} <= metrics
            assert (out / "runs" / variant / f"seed{seed}" / "checkpoints" / "last.pt").is_file()
    floor = {r["metric"] for r in rows if r["variant"] == "random_init"}
    assert {"probe_top1", "knn_top1", "psnr_masked"} <= floor
    assert {r["seed"] for r in rows if r["variant"] == "zero_prediction"} == {"0", "1"}
    assert all(r["status"] == "done" and r["value"] for r in rows)


def test_each_run_trains_its_own_variant_and_seed(finished_suite):
    _, out = finished_suite
    seen = {(r["variant"], r["seed"]): float(r["value"]) for r in csv_rows(out) if r["metric"] == "mask_ratio_seen"}
    assert seen[("baseline", "0")] == pytest.approx(0.75)
    # 0 at the first of 2 epochs, 1 at the last (the schedule reaches mask.max), each clamped: 1/64 then 63/64
    assert seen[("linear", "0")] == pytest.approx(0.5)
    cfg = load_checkpoint(checkpoint_path(out / "runs" / "linear" / "seed1"))["config"]
    assert cfg["train"]["seed"] == 1 and cfg["mask"]["schedule"] == "linear"
    probe = json.loads((out / "runs" / "baseline" / "seed1" / "eval" / "probe.json").read_text())
    assert probe["epochs"] == 5  # the suite's evaluation overrides applied


def test_a_finished_suite_is_skipped_entirely(suite_copy, monkeypatch):
    path, out = suite_copy
    monkeypatch.setattr(pretrain_module, "pretrain", lambda *a, **k: pytest.fail("pretrained again"))
    monkeypatch.setattr(commands, "run_probe", lambda *a, **k: pytest.fail("probed again"))
    before = (out / "results.csv").read_text()
    lines = []
    run_suite(load_suite(path), out, "again", log=lines.append)
    assert "4 already finished" in lines[0]
    assert (out / "results.csv").read_text() == before


def test_rerunning_a_finished_suite_records_no_invocation_since_it_produced_nothing(suite_copy, capsys):
    from maelab.ablate.environment import read_invocations
    from maelab.cli import main

    path, out = suite_copy
    before = read_invocations(out)
    assert main(["ablate", str(path), "--out", str(out)]) == 0
    assert "4 already finished" in capsys.readouterr().out
    assert read_invocations(out) == before
    (out / "runs/linear/seed1/ablate.json").unlink()  # one run left to do: this invocation produces it
    assert main(["ablate", str(path), "--out", str(out)]) == 0
    assert [r["command"] for r in read_invocations(out)[len(before):]] == [f"maelab ablate {path} --out {out}"]


def test_a_failed_run_is_recorded_the_others_go_on_and_it_is_rerun(tmp_path, monkeypatch):
    path = write_suite(tmp_path / "suite", seeds=1)
    out = tmp_path / "out"
    real_probe = commands.run_probe

    def probe_failing_for_linear(run_dir, *args, **kwargs):
        if "linear" in str(run_dir):
            raise RuntimeError("probe exploded")
        return real_probe(run_dir, *args, **kwargs)

    monkeypatch.setattr(commands, "run_probe", probe_failing_for_linear)
    lines = []
    run_suite(load_suite(path), out, "first", log=lines.append)
    assert any("linear seed 0 FAILED: RuntimeError: probe exploded" in line for line in lines)
    status = read_status(run_dir_of(out, "linear", 0))
    assert status["status"] == "failed" and status["pretrained"] and "probe exploded" in status["traceback"]
    rows = csv_rows(out)
    assert [r["error"] for r in rows if r["status"] == "failed"] == ["RuntimeError: probe exploded"]
    assert any(r["variant"] == "baseline" and r["metric"] == "probe_top1" for r in rows)  # the other run finished

    monkeypatch.setattr(commands, "run_probe", real_probe)
    monkeypatch.setattr(pretrain_module, "pretrain", lambda *a, **k: pytest.fail("its pretraining had finished"))
    run_suite(load_suite(path), out, "second", log=lines.append)
    assert read_status(run_dir_of(out, "linear", 0))["status"] == "done"
    assert not [r for r in csv_rows(out) if r["status"] == "failed"]
    assert [inv["command"] for inv in json.loads((out / "environment.json").read_text())] == ["first", "second"]


def test_a_run_that_failed_is_not_counted_among_the_runs_left(tmp_path, monkeypatch):
    path = write_suite(tmp_path / "suite", seeds=1)
    monkeypatch.setattr(commands, "run_probe", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("probe exploded")))
    lines = []
    run_suite(load_suite(path), tmp_path / "out", None, log=lines.append)
    started = [line for line in lines if line.startswith("[")]
    assert started[0].startswith("[1/2] baseline seed 0:") and "1 other run to go" in started[0]
    assert started[1].startswith("[2/2] linear seed 0:") and "0 other runs to go" in started[1]  # baseline failed


def test_the_time_left_is_unknown_until_a_run_is_timed_and_then_counts_the_run_starting(tmp_path, monkeypatch):
    from maelab.ablate import run_one as run_one_module
    from maelab.ablate import runner as runner_module
    from maelab.ablate.results import write_status

    def fifty_seconds(plan, suite):  # a run of 50 s: add_seconds adds the real (tiny) time to these
        write_status(plan.run_dir, {"status": "done", "seconds": 50.0})

    monkeypatch.setattr(run_one_module, "run_one", fifty_seconds)
    monkeypatch.setattr(runner_module, "collect_and_write", lambda *a, **k: [])
    lines = []
    run_suite(load_suite(write_suite(tmp_path / "suite", seeds=1)), tmp_path / "out", None, log=lines.append)
    started = [line for line in lines if line.startswith("[")]
    assert started[0].endswith("1 other run to go, no run timed yet)")  # was "estimating"
    assert started[1].endswith("0 other runs to go, about 50 s left)")  # the last run itself: was "about 0 s left"


def test_an_interrupted_run_resumes_from_its_checkpoint_and_matches_a_straight_one(tmp_path, monkeypatch):
    path = write_suite(tmp_path / "suite", seeds=1, variants={"baseline": {}}, claims=[])
    suite = load_suite(path)
    out = tmp_path / "out"
    plan = plan_runs(suite, out)[0]
    cfg = load_config(None, ["train.stop_after_epochs=1"], base=_as_dict(plan.cfg))
    pretrain_module.pretrain(cfg)  # "killed" after its first epoch: a checkpoint, no ablate.json
    resumed = []
    real_resume = pretrain_module.resume
    monkeypatch.setattr(pretrain_module, "resume", lambda *a, **k: resumed.append(a) or real_resume(*a, **k))
    run_suite(suite, out, "resume", log=lambda _: None)
    assert resumed and read_status(plan.run_dir)["status"] == "done"
    straight = tmp_path / "straight"
    pretrain_module.pretrain(load_config(None, [f"out_dir={straight}"], base=_as_dict(plan.cfg)))
    a = load_checkpoint(checkpoint_path(plan.run_dir))["model"]
    b = load_checkpoint(checkpoint_path(straight))["model"]
    assert all((a[k] == b[k]).all() for k in a)


def _as_dict(cfg):
    from maelab.config import to_dict

    return to_dict(cfg)


def test_an_out_folder_of_another_suite_is_refused_and_kept(suite_copy, tmp_path):
    _, out = suite_copy
    other = write_suite(tmp_path / "other", overrides=["optim.epochs=3"])
    before = (out / "suite.yaml").read_text()
    with pytest.raises(UserError, match="another suite"):
        run_suite(load_suite(other), out, "other", log=lambda _: None)
    assert (out / "suite.yaml").read_text() == before


def test_more_seeds_extend_a_finished_suite(suite_copy, monkeypatch):
    path, out = suite_copy
    calls = []
    monkeypatch.setattr(commands, "run_knn", lambda run_dir, *a, **k: calls.append(str(run_dir)))
    monkeypatch.setattr(commands, "run_recon", lambda *a, **k: None)
    monkeypatch.setattr(commands, "run_probe", lambda *a, **k: None)
    monkeypatch.setattr(pretrain_module, "pretrain", lambda cfg, **_: calls.append(cfg.out_dir))
    run_suite(load_suite(path, seeds=3), out, "more seeds", log=lambda _: None)
    assert all("seed2" in c for c in calls) and len(calls) >= 2  # only the new seed's runs


def test_a_run_killed_after_its_last_checkpoint_is_finished_not_failed(tmp_path):
    path = write_suite(tmp_path / "suite", seeds=1, variants={"baseline": {}}, claims=[])
    suite = load_suite(path)
    out = tmp_path / "out"
    plan = plan_runs(suite, out)[0]
    pretrain_module.pretrain(plan.cfg)  # all its epochs and the last checkpoint, then "killed" before ablate.json
    step = load_checkpoint(checkpoint_path(plan.run_dir))["step"]
    run_suite(suite, out, "again", log=lambda _: None)
    assert read_status(plan.run_dir)["status"] == "done"
    assert load_checkpoint(checkpoint_path(plan.run_dir))["step"] == step


def test_a_file_as_the_ablation_folder_is_one_clear_error(tmp_path, capsys):
    from maelab.cli import main

    path = write_suite(tmp_path / "suite", seeds=1, variants={"baseline": {}}, claims=[])
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["ablate", str(path), "--out", str(afile)]) == 2
    assert "--out" in capsys.readouterr().err and afile.read_text() == "x"


def test_workers_below_one_are_refused_and_a_finished_suite_starts_no_worker(finished_suite, tmp_path, monkeypatch,
                                                                            capsys):

    from maelab.ablate import workers
    from maelab.cli import main

    path, done = finished_suite
    out = shutil.copytree(done, tmp_path / "out")
    assert main(["ablate", str(path), "--out", str(out), "--workers", "0"]) == 2
    assert "--workers 0 is not valid" in capsys.readouterr().err
    monkeypatch.setattr(workers, "run_workers", lambda *a, **k: pytest.fail("no run is left to do"))
    assert main(["ablate", str(path), "--out", str(out), "--workers", "100"]) == 0


def test_fewer_seeds_than_a_folder_has_finished_are_refused_and_its_files_kept(suite_copy, capsys):
    from maelab.cli import main

    path, out = suite_copy  # seeds 0-1 finished (the suite's default of 2)
    shutil.copytree(out / "runs" / "baseline" / "seed1", out / "runs" / "baseline" / "seed3")  # as --seeds 4 did
    (out / "report.md").write_text("as it was")
    names = ("suite.yaml", "results.csv", "environment.json", "report.md")
    before = {name: (out / name).read_text() for name in names}
    for given in ([], ["--seeds", "1"], ["--seeds", "auto"]):  # the default, fewer, a pilot of 3 without a plan
        assert main(["ablate", str(path), "--out", str(out), *given]) == 2
        err = capsys.readouterr().err
        assert "finished runs of seed" in err and "--seeds 4 or more" in err and "Traceback" not in err
    assert {name: (out / name).read_text() for name in names} == before


def test_a_seed_count_below_the_suite_files_is_no_refusal_where_no_run_finished_beyond_it(tmp_path):
    path = write_suite(tmp_path / "suite", seeds=5)
    out = tmp_path / "out"
    save_suite(load_suite(path), out)  # suite.yaml says 5: what the file asks, not what ran
    save_suite(load_suite(path, seeds=1), out)  # --seeds 1, or --seeds auto's pilot of 3, into that folder: no error
    assert saved_suite(out).seeds == 5


@pytest.mark.parametrize("threads", ["0", "-1"])
def test_threads_below_one_are_refused_before_anything_is_written(tmp_path, capsys, threads):
    from maelab.cli import main

    path = write_suite(tmp_path / "suite")
    out = tmp_path / "out"
    assert main(["ablate", str(path), "--out", str(out), "--threads", threads]) == 2
    assert f"--threads {threads} is not valid" in capsys.readouterr().err and not out.exists()
