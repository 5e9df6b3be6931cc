"""A full disk while `knn`, `probe`, `recon`, `figures`, `export`, `ablate` or `report` writes: one line naming the
file, the reason and the fix, exit 2, no traceback; what was written before stays byte-identical and no empty,
partial or temporary file is left (a real filled tmpfs on the output folder where it can be mounted, else
simulated: tests/full_disk.py)."""

import shutil

import pytest

from maelab.cli import main
from tests.full_disk import full_disk_at, listing


@pytest.fixture
def run_dir(one_epoch_run, tmp_path):
    return shutil.copytree(one_epoch_run, tmp_path / "run")


def one_error(capsys):
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("maelab: error:")]
    assert len(errors) == 1 and "Traceback" not in err and "internal error" not in err, err
    return errors[0]


@pytest.mark.parametrize("command,folder,what,again", [
    (["knn"], "eval", "result", "run the evaluation again"),
    (["recon"], "eval", "result", "run the evaluation again"),
    (["probe", "probe.epochs=1"], "eval", "result", "run the evaluation again"),
    (["figures", "--images", "2", "--ratios", "0.5"], "figures", "figure", "run maelab figures again"),
    (["export"], "export", "export", "run maelab export again"),
    (["export", "--format", "hf"], "export/hf", "export", "run maelab export again"),
])
def test_a_full_disk_is_one_line_exit_2_and_keeps_what_was_written(run_dir, capsys, command, folder, what, again):
    out = run_dir / folder
    with full_disk_at(out) as fill:
        assert main([command[0], str(run_dir), *command[1:]]) == 0  # the first time there is room
        before = listing(out)
        assert before and all(before.values())
        capsys.readouterr()
        fill()
        assert main([command[0], str(run_dir), *command[1:]]) == 2
        line = one_error(capsys)
        assert line.startswith(f"maelab: error: cannot write the {what} {out}")
        assert "(No space left on device): free space on the disk holding " in line and again in line
        assert listing(out) == before  # byte sizes as before: nothing replaced, no empty, partial or temp file


@pytest.mark.parametrize("command,folder", [
    (["knn"], "eval"),
    (["figures", "--images", "2", "--ratios", "0.5"], "figures"),
    (["export", "--format", "timm"], "export/timm"),
])
def test_a_read_only_disk_is_one_line_naming_the_fix(run_dir, capsys, command, folder):
    out = run_dir / folder
    with full_disk_at(out) as fill:
        assert main([command[0], str(run_dir), *command[1:]]) == 0
        before = listing(out)
        capsys.readouterr()
        fill(read_only=True)
        assert main([command[0], str(run_dir), *command[1:]]) == 2
        line = one_error(capsys)
        assert "(Read-only file system): make " in line and " writable, then run " in line
        assert listing(out) == before


def test_a_full_disk_under_an_ablation_folder_is_one_line_exit_2_and_keeps_its_files(finished_suite, tmp_path, capsys):
    # `maelab ablate` rewrites suite.yaml, results.csv and report.md, `maelab report` its figures and report.md:
    # a bare OSError made it "internal error ... a bug in maelab", exit 1; the report's figures were written in place
    suite, finished = finished_suite
    disk = tmp_path / "disk"
    with full_disk_at(disk, "64m") as fill:
        out = shutil.copytree(finished, disk / "out")
        fill()
        before = listing(out)
        for command, written, then in (
                (["ablate", str(suite), "--out", str(out)], f"file {out}/suite.yaml", "run `maelab ablate` again"),
                (["report", str(out)], f"figure {out}/figures/", "run maelab report on the folder again")):
            assert main(command) == 2
            line = one_error(capsys)
            assert line.startswith(f"maelab: error: cannot write the {written}") and then in line, line
            assert "(No space left on device): free space on the disk holding " in line
            assert listing(out) == before  # nothing replaced, no empty, partial or temporary file
