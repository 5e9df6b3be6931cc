"""What maelab writes atomically (checkpoints, results, figures, the image cache) gets the permissions a plain
``open`` gives under the process's umask, not mkstemp's 0600: others on a shared cluster folder can read it."""

from __future__ import annotations

import stat

from maelab import atomic
from maelab.atomic import write_text_atomic
from maelab.config import load_config
from maelab.engine.pretrain import pretrain


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_atomic_file_gets_the_mode_a_plain_open_gives(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert mode(write_text_atomic(tmp_path / "atomic.txt", "x")) == mode(plain) == 0o666 & ~atomic.UMASK


def test_a_runs_checkpoint_and_metrics_are_readable_by_others_under_umask_022(tmp_path, tiny, monkeypatch):
    monkeypatch.setattr(atomic, "FILE_MODE", 0o644)  # as under umask 022
    run = pretrain(load_config(None, [*tiny, "optim.epochs=1", f"out_dir={tmp_path / 'run'}"]))
    assert mode(run / "checkpoints" / "last.pt") == 0o644
    written = [p for p in run.rglob("*") if p.is_file()]
    assert written and all(mode(p) & 0o044 == 0o044 for p in written), {str(p): oct(mode(p)) for p in written}
