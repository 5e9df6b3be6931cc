"""TensorBoard and Weights & Biases (offline mode: no network) get the run's numbers and reconstruction images."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest
import torch

from maelab.cli import main
from maelab.engine.checkpoint import checkpoint_path, load_checkpoint
from maelab.engine.metrics import read_metrics
from tests.conftest import TINY

RUN = [*TINY, "optim.epochs=2", "train.seed=5"]


def wandb_records(run_dir: Path) -> list:
    """The records of RUN_DIR's offline W&B runs: the .wandb file is LevelDB's log format (7-byte header, then
    records of [crc32 4, length 2, type 1] in 32 KiB blocks; type 1 whole, 2/3/4 first/middle/last) holding
    wandb_internal_pb2.Record messages."""
    from wandb.proto import wandb_internal_pb2 as pb

    out = []
    for path in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        data, pos, pending = path.read_bytes(), 7, b""
        assert data[:4] == b":W&B"
        while pos + 7 <= len(data):
            if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
                pos += 32768 - pos % 32768
                continue
            _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
            if kind == 0 or pos + 7 + length > len(data):  # zero padding, or a record still being written
                break
            chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
            pending = chunk if kind in (1, 2) else pending + chunk
            if kind in (1, 4):
                record = pb.Record()
                record.ParseFromString(pending)
                out.append(record)
    return out


def finished_records(run_dir: Path, timeout: float = 90.0) -> list:
    """:func:`wandb_records` once W&B has written its ``exit`` record: wandb 0.31's ``finish()`` can return before
    its service process has flushed the offline file (seen here under load), so the test waits for the file."""
    deadline = time.monotonic() + timeout
    while True:
        records = wandb_records(run_dir)
        if (records and records[-1].WhichOneof("record_type") == "exit") or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


def history(run_dir: Path) -> list[dict]:
    rows = [r.history for r in finished_records(run_dir) if r.WhichOneof("record_type") == "history"]
    return [{(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in row.item} for row in rows]


@pytest.fixture
def offline(monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_an_offline_wandb_run_holds_every_logged_loss_and_the_reconstructions(tmp_path, offline):
    out = tmp_path / "run"
    assert main(["pretrain", *RUN, "train.wandb=maelab-tests", "train.log_images_every=1", f"out_dir={out}"]) == 0
    rows = history(out)
    logged = [r["step/loss"] for r in rows if "step/loss" in r]
    assert logged == pytest.approx([m["loss"] for m in read_metrics(out) if m["kind"] == "step"])
    images = [r for r in rows if "epoch/reconstructions/path" in r]
    assert [r["_step"] for r in images] == [4, 8]  # after each epoch, at its last step
    assert all((next(out.glob("wandb/offline-run-*")) / "files" / r["epoch/reconstructions/path"]).is_file()
               for r in images)
    assert images[0]["epoch/reconstructions/width"] == 8 * 32 + 7 * 2  # 8 images side by side, 2-pixel gaps
    assert not any("reconstructions" in m for m in read_metrics(out))  # the image is not in metrics.jsonl


def test_tensorboard_gets_the_reconstruction_images_too(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main(["pretrain", *RUN, "train.log_images_every=2", f"out_dir={out}"]) == 0
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert [e.step for e in events.Images("epoch/reconstructions")] == [8]  # every 2 epochs: after the second
    assert "step/loss" in events.Tags()["scalars"]


def test_a_resume_continues_the_same_wandb_run(tmp_path, offline):
    out = tmp_path / "run"
    assert main(["pretrain", *RUN, "train.wandb=maelab-tests", "train.stop_after_epochs=1", f"out_dir={out}"]) == 0
    run_id = (out / "wandb" / "run_id").read_text()
    assert main(["pretrain", "--resume", str(out)]) == 0
    assert (out / "wandb" / "run_id").read_text() == run_id
    folders = list((out / "wandb").glob("offline-run-*"))  # W&B adds "-1" when two start in the same second
    assert len(folders) == 2 and all(f"-{run_id}" in p.name for p in folders)


def test_logging_images_leaves_the_training_unchanged(tmp_path):
    plain = tmp_path / "plain"
    imaged = tmp_path / "imaged"
    assert main(["pretrain", *RUN, "train.tensorboard=false", f"out_dir={plain}"]) == 0
    assert main(["pretrain", *RUN, "train.log_images_every=1", f"out_dir={imaged}"]) == 0
    a, b = (load_checkpoint(checkpoint_path(d))["model"] for d in (plain, imaged))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_wandb_without_the_package_is_one_clear_line(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    assert main(["pretrain", *RUN, "train.wandb=p", f"out_dir={tmp_path / 'run'}"]) == 2
    assert "pip install 'maelab[wandb]'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_online_wandb_without_a_login_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    pytest.importorskip("wandb")
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
    assert main(["pretrain", *RUN, "train.wandb=p", f"out_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert "no W&B login was found" in err and "WANDB_MODE=offline" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
