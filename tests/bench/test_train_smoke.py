"""bench/train_smoke.py: the GPU check's training stage, its reading of the run and its time limits."""

import json
import sys

import train_smoke


def records(epochs, spe=4, log_every=2, restart_at=None):
    """A run's metrics records: ``epochs`` epochs of ``spe`` steps, a step record every ``log_every`` steps, the
    mask ratio rising by epoch; ``restart_at``: a resume that logged from step 0 again from that epoch on."""
    out, step = [], 0
    for epoch in range(epochs):
        if restart_at is not None and epoch == restart_at:
            step = 0
        for _ in range(spe):
            step += 1
            if step % log_every == 0:
                out.append({"kind": "step", "epoch": epoch, "step": step, "mask_ratio": epoch / 2, "img_per_s": 100.0
                            + step})
        out.append({"kind": "epoch", "epoch": epoch, "step": step, "img_per_s": 50.0, "seconds": 1.0,
                    "mask_ratio": epoch / 2, "loss": 1.0})
    return out


def test_a_resume_that_continued_at_the_checkpoints_step_is_recognised():
    check = train_smoke.resume_check(records(3), ckpt_step=8, log_every=2, epochs_total=3)
    assert check == {"checkpoint_step": 8, "first_step_after": 10, "expected_first_step_after": 10,
                     "epochs_after": [2], "continued": True, "why_not": None}


def test_a_resume_that_started_over_or_skipped_an_epoch_is_not():
    over = train_smoke.resume_check(records(3, restart_at=2), ckpt_step=8, log_every=2, epochs_total=3)
    assert not over["continued"] and "not (epoch + 1)" in over["why_not"]
    short = [r for r in records(4) if r["epoch"] != 2]  # epoch 2 never ran
    skipped = train_smoke.resume_check(short, ckpt_step=8, log_every=2, epochs_total=4)
    assert not skipped["continued"] and "[0, 1, 3]" in skipped["why_not"] and "not step 10" in skipped["why_not"]


def test_each_epoch_keeps_its_logging_windows_and_their_rate_after_the_first():
    rows = train_smoke.epoch_rows(records(2))
    assert [r["windows_img_per_s"] for r in rows] == [[102.0, 104.0], [106.0, 108.0]]
    assert rows[1]["median_later_windows_img_per_s"] == 108.0 and rows[0]["mask_ratio"] == 0.0


def test_an_invocation_past_its_limit_is_stopped_then_killed():
    record = {}
    train_smoke.invoke([sys.executable, "-c", "import time; time.sleep(60)"], 0.5, 5, record)
    assert record["timed_out"] and record["exit_code"] == -15 and record["wall_s"] < 5  # SIGTERM was enough
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    train_smoke.invoke([sys.executable, "-c", stubborn], 3.0, 0.5, record)  # 3 s: time to ignore SIGTERM first
    assert record["timed_out"] and record["exit_code"] == -9 and record["wall_s"] < 8  # SIGKILL after the grace


def test_a_first_invocation_that_fails_leaves_a_json_that_says_so(tmp_path):
    out = tmp_path / "train_smoke.json"
    result = train_smoke.main(["--run-dir", str(tmp_path / "run"), "--json", str(out), "--limits", "60", "60",
                               "model.preset=no_such_preset", "train.device=cpu"])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result)) and not saved["ok"] and not saved["complete"]
    assert [r["exit_code"] for r in saved["invocations"]] == [2]  # maelab's error exit; no resume was tried
    assert saved["resume"] == {"continued": False, "why_not": "the first invocation left no checkpoint"}
