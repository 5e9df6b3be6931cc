import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from maelab.ablate import load_suite, run_suite
from maelab.ablate.results import read_status, write_status
from maelab.ablate.runner import plan_runs, save_suite
from maelab.ablate.transfer import merge_archive, pack_suite
from maelab.ablate.transfer_runs import EQUAL, KEPT, TAKEN, choose, progress_of, results_of
from maelab.config import load_config, to_dict
from maelab.engine import pretrain as pretrain_module
from maelab.errors import UserError
from tests.ablate.conftest import write_suite


def _hashes(folder: Path) -> dict[str, str]:
    """Every file's content hash and every folder, by path: what "unchanged" means here."""
    return {p.relative_to(folder).as_posix(): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))}


def _names(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return tar.getnames()


def test_the_archive_of_a_finished_suite_leaves_out_checkpoints_tensorboard_caches_claims_and_merges_the_same(
        suite_copy, tmp_path):
    _, out = suite_copy
    run = out / "runs" / "baseline" / "seed0"
    (run / "tensorboard").mkdir()
    (run / "tensorboard" / "events.out").write_text("x")
    (run / "export").mkdir()
    (run / "export" / "encoder.pt").write_text("x")
    (run / ".claim").write_text("123 somehost")
    assert (run / "eval" / "cache").is_dir() and (run / "checkpoints" / "last.pt").is_file()
    summary = pack_suite(out, tmp_path / "window1.tar.gz", extra=[out / "environment.json"])
    assert (summary.done, summary.unfinished, summary.failed) == (4, 0, 0)
    assert summary.line() == f"wrote {tmp_path / 'window1.tar.gz'} (4 runs done, 0 unfinished)"
    names = _names(tmp_path / "window1.tar.gz")
    assert names[0] == "suite.yaml" and "runs/linear/seed1/eval/probe.json" in names
    assert "windows/window1/environment.json" in names
    left_out = ("checkpoints/", "tensorboard/", "/cache/", "export/", ".claim", ".tmp")
    assert not [n for n in names if any(part in n for part in left_out)]
    merged = merge_archive(tmp_path / "window1.tar.gz", tmp_path / "merged")
    assert len(merged.taken) == 4 and (tmp_path / "merged" / "windows" / "window1" / "environment.json").is_file()
    assert (tmp_path / "merged" / "results.csv").read_text() == (out / "results.csv").read_text()
    assert json.loads((tmp_path / "merged" / "environment.json").read_text()) == \
        json.loads((out / "environment.json").read_text())


def test_an_unfinished_runs_checkpoint_travels_and_the_run_resumes_after_the_merge(finished_suite, tmp_path,
                                                                                   monkeypatch):
    path = write_suite(tmp_path / "suite", seeds=1, variants={"baseline": {}}, claims=[])
    suite = load_suite(path)
    gpu, local = tmp_path / "gpu", tmp_path / "local"
    save_suite(suite, gpu)
    plan = plan_runs(suite, gpu)[0]
    pretrain_module.pretrain(load_config(None, ["train.stop_after_epochs=1"], base=to_dict(plan.cfg)))  # "killed"
    summary = pack_suite(gpu, tmp_path / "w.tar.gz")
    assert (summary.done, summary.unfinished) == (0, 1)
    assert "runs/baseline/seed0/checkpoints/last.pt" in _names(tmp_path / "w.tar.gz")
    assert merge_archive(tmp_path / "w.tar.gz", local).taken == ["runs/baseline/seed0"]
    resumed = []
    real_resume = pretrain_module.resume
    monkeypatch.setattr(pretrain_module, "resume", lambda *a, **k: resumed.append(a) or real_resume(*a, **k))
    run_suite(suite, local, "next window", log=lambda _: None)
    run_dir = local / "runs" / "baseline" / "seed0"
    assert resumed and read_status(run_dir)["status"] == "done"
    straight = finished_suite[1] / "runs" / "baseline" / "seed0"  # the same config, run in one go
    assert results_of(run_dir) == results_of(straight)


def test_merging_the_same_archive_twice_changes_nothing(finished_suite, tmp_path):
    pack_suite(finished_suite[1], tmp_path / "w.tar.gz")
    merge_archive(tmp_path / "w.tar.gz", tmp_path / "merged")
    before = _hashes(tmp_path / "merged")
    again = merge_archive(tmp_path / "w.tar.gz", tmp_path / "merged")
    assert len(again.equal) == 4 and not again.taken and not again.kept
    assert _hashes(tmp_path / "merged") == before


def test_another_suites_archive_is_refused_and_the_folder_is_unchanged(suite_copy, tmp_path):
    _, out = suite_copy
    other = load_suite(write_suite(tmp_path / "other", overrides=["optim.epochs=3"]))
    save_suite(other, tmp_path / "other_out")
    pack_suite(tmp_path / "other_out", tmp_path / "other.tar.gz")
    before = _hashes(out)
    with pytest.raises(UserError, match="another suite"):
        merge_archive(tmp_path / "other.tar.gz", out)
    assert _hashes(out) == before


def test_a_conflicting_finished_run_is_refused_and_nothing_is_written(finished_suite, suite_copy, tmp_path):
    _, out = suite_copy
    pack_suite(finished_suite[1], tmp_path / "w.tar.gz")
    probe = out / "runs" / "baseline" / "seed1" / "eval" / "probe.json"
    probe.write_text(json.dumps({**json.loads(probe.read_text()), "top1": 99.0}))
    shutil.rmtree(out / "runs" / "linear" / "seed0")  # the archive's would be taken, were the merge not refused
    before = _hashes(out)
    with pytest.raises(UserError) as refused:
        merge_archive(tmp_path / "w.tar.gz", out)
    message = str(refused.value)
    assert message.startswith("runs/baseline/seed1 is finished in both with different results (eval/probe.json top1")
    assert "\n" not in message and _hashes(out) == before


@pytest.mark.parametrize("cut", [0.5, -4])  # half of it; its last 4 bytes (the gzip trailer's length)
def test_a_truncated_archive_is_refused_in_one_line_and_no_folder_is_left(finished_suite, tmp_path, cut):
    data = pack_suite(finished_suite[1], tmp_path / "w.tar.gz") and (tmp_path / "w.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: int(len(data) * cut)] if cut > 0 else data[:cut])
    with pytest.raises(UserError, match="corrupt, truncated") as refused:
        merge_archive(tmp_path / "cut.tar.gz", tmp_path / "new")
    assert "\n" not in str(refused.value) and not (tmp_path / "new").exists()


def _crafted(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        suite = tarfile.TarInfo("suite.yaml")
        suite.size = len(b"name: tiny\n")
        tar.addfile(suite, io.BytesIO(b"name: tiny\n"))
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    return path


def _link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


@pytest.mark.parametrize("member", [tarfile.TarInfo("../evil.txt"), tarfile.TarInfo("/tmp/evil.txt"),
                                    _link("runs/x/seed0/link", "/etc/passwd")], ids=["dotdot", "absolute", "link"])
def test_a_member_outside_the_folder_or_a_link_is_refused_and_nothing_is_extracted(tmp_path, member):
    archive = _crafted(tmp_path / "evil.tar.gz", member, b"" if member.issym() else b"evil")
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match="is not a safe archive"):
        merge_archive(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and list((tmp_path / "out").iterdir()) == []


def test_an_archive_without_a_suite_is_refused(tmp_path):
    with tarfile.open(tmp_path / "plain.tar.gz", "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("notes.txt"), io.BytesIO(b""))
    with pytest.raises(UserError, match="not a maelab suite archive"):
        merge_archive(tmp_path / "plain.tar.gz", tmp_path / "new")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("theirs, mine, expected", [
    ({"status": "done"}, {"status": "failed"}, TAKEN),  # done replaces failed or unfinished
    ({"pretrained": True}, {"status": "done"}, KEPT),  # this folder's done run is kept
    ({"pretrained": True}, {}, TAKEN),  # both unfinished: the one further along (pretrained)
    ({}, {"pretrained": True}, KEPT),
    ({"status": "failed", "error": "x"}, {"status": "failed", "error": "x"}, EQUAL),
])
def test_which_copy_of_a_run_a_merge_keeps(finished_suite, tmp_path, theirs, mine, expected):
    run = finished_suite[1] / "runs" / "linear" / "seed0"
    a, b = shutil.copytree(run, tmp_path / "a"), shutil.copytree(run, tmp_path / "b")
    for copy, status in ((a, theirs), (b, mine)):
        shutil.rmtree(copy / "checkpoints")
        write_status(copy, status)
    assert choose(a, b, "runs/linear/seed0") == expected
    assert choose(a, tmp_path / "missing", "runs/linear/seed0") == TAKEN


def test_of_two_unfinished_copies_the_one_whose_checkpoint_is_further_along_is_kept(finished_suite, tmp_path):
    run = finished_suite[1] / "runs" / "linear" / "seed0"
    a, b = shutil.copytree(run, tmp_path / "a"), shutil.copytree(run, tmp_path / "b")
    for copy in (a, b):
        write_status(copy, {"pretrained": True})  # evaluations left to do
    (b / "checkpoints" / "last.pt").unlink()
    assert progress_of(a)[1] == 2.0 and progress_of(b)[1] == 0.0  # the tiny suite trains 2 epochs
    assert choose(a, b, "runs/linear/seed0") == TAKEN and choose(b, a, "runs/linear/seed0") == KEPT


def test_merge_with_a_missing_archive_is_one_line_and_exit_code_2(tmp_path, capsys):
    from maelab.cli import main

    assert main(["ablate", "--merge", str(tmp_path / "nope.tar.gz")]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["ablate"]) == 2 and "needs a suite file" in capsys.readouterr().err


def test_an_archive_inside_the_folder_or_a_folder_is_refused_before_anything_runs(finished_suite, tmp_path, capsys):
    from maelab.cli import main

    path, _ = finished_suite
    out = tmp_path / "new"
    assert main(["ablate", str(path), "--out", str(out), "--archive", str(out / "w.tar.gz")]) == 2
    assert "inside the ablation folder" in capsys.readouterr().err and not out.exists()
    assert main(["ablate", str(path), "--out", str(out), "--archive", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err and not out.exists()


def test_archive_then_merge_round_trip_through_the_cli(suite_copy, tmp_path, capsys):
    from maelab.cli import main

    path, out = suite_copy
    archive, merged = tmp_path / "w.tar.gz", tmp_path / "merged"
    assert main(["ablate", str(path), "--out", str(out), "--archive", str(archive)]) == 0
    assert f"wrote {archive} (4 runs done, 0 unfinished)" in capsys.readouterr().out
    assert main(["ablate", "--merge", str(archive), "--out", str(merged)]) == 0
    said = capsys.readouterr().out
    assert "4 taken" in said and f"wrote {merged / 'results.csv'}" in said and f"wrote {merged / 'report.md'}" in said
    assert (merged / "results.csv").read_text() == (out / "results.csv").read_text()
    assert main(["ablate", str(path), "--merge", str(archive), "--out", str(merged)]) == 0  # its own suite file
    assert "4 already equal" in capsys.readouterr().out
    other = write_suite(tmp_path / "other", overrides=["optim.epochs=3"])
    assert main(["ablate", str(other), "--merge", str(archive), "--out", str(merged)]) == 2
    assert "holds the results of suite tiny" in capsys.readouterr().err


def test_an_interrupted_stage_still_packs_what_is_there(finished_suite, tmp_path, monkeypatch, capsys):
    import signal

    from maelab.ablate import runner
    from maelab.cli import main
    from maelab.engine.signals import RunInterrupted

    path, done = finished_suite
    out, archive = tmp_path / "out", tmp_path / "w.tar.gz"

    def stopped(suite, out, *args, **kwargs):  # one run finished, then SIGTERM
        shutil.copytree(done / "runs" / "baseline" / "seed0", out / "runs" / "baseline" / "seed0")
        raise RunInterrupted(out / "runs" / "linear" / "seed0", 3, signal.SIGTERM)

    monkeypatch.setattr(runner, "run_suite", stopped)
    assert main(["ablate", str(path), "--out", str(out), "--archive", str(archive)]) == 0
    assert f"wrote {archive} (1 run done, 0 unfinished)" in capsys.readouterr().out
    assert "runs/baseline/seed0/eval/probe.json" in _names(archive)
