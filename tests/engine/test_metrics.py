import errno
import json
import os

from maelab.cli import main
from maelab.engine.checkpoint import checkpoint_path, load_checkpoint
from maelab.engine.metrics import MetricsLogger, drop_metrics_after, read_metrics
from tests.conftest import TINY, after_banner


class FillsUp:
    """A file whose disk is full after ``room`` writes (the last one is cut short)."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, text):
        self.room -= 1
        if self.room < 0:
            self.f.write(text[: len(text) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.f.write(text)

    def flush(self):
        self.f.flush()

    def close(self):
        self.f.close()


def test_a_full_disk_while_logging_is_one_clear_error_and_resume_drops_the_cut_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real_init = MetricsLogger.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self._file = FillsUp(self._file, room=4 + 1 + 1)  # epoch 0: 4 step lines + its epoch line; then 1 step

    monkeypatch.setattr(MetricsLogger, "__init__", init)
    args = [*TINY, "optim.epochs=2", "train.log_every=1", "train.tensorboard=false", f"out_dir={out}"]
    assert main(["pretrain", *args]) == 2
    err = after_banner(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith(f"maelab: error: cannot write the metrics {out / 'metrics.jsonl'} "
                                               "(No space left on device): free space")
    assert load_checkpoint(checkpoint_path(out))["step"] == 4
    assert not (out / "metrics.jsonl").read_text().endswith("\n")  # the cut line is there ...
    assert len(read_metrics(out)) == 6  # ... and left out by the reader
    monkeypatch.undo()
    assert main(["pretrain", "--resume", str(out)]) == 0
    assert [(r["kind"], r["step"]) for r in read_metrics(out)] == [
        *(("step", s) for s in range(1, 5)), ("epoch", 4), *(("step", s) for s in range(5, 9)), ("epoch", 8)]


def test_drop_metrics_after_keeps_the_records_up_to_the_checkpoint(tmp_path):
    lines = [json.dumps({"kind": "step", "step": s}) for s in (1, 2, 3)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"kind": "st')
    drop_metrics_after(tmp_path, 2)
    assert (tmp_path / "metrics.jsonl").read_text() == "\n".join(lines[:2]) + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]
