"""A run says at start what it trains on and with, keeps it in run_info.json, and warns when a CPU resume uses
another thread count (its bit-exact promise holds with the same count only)."""

import json

import torch

from maelab.config import load_config
from maelab.engine.checkpoint import checkpoint_path, load_checkpoint
from maelab.engine.pretrain import pretrain, resume
from maelab.run_layout import RunLayout


def test_a_run_says_what_it_trains_on_and_keeps_it_in_the_run_folder(tmp_path, tiny, capsys):
    run_dir = pretrain(load_config(None, [*tiny, "optim.epochs=1", "train.threads=1", f"out_dir={tmp_path / 'r'}"]))
    err = capsys.readouterr().err
    [facts] = json.loads(RunLayout(run_dir).run_info.read_text())
    weights = load_checkpoint(checkpoint_path(run_dir))["model"]
    parameters = sum(v.numel() for k, v in weights.items() if k not in ("pos_embed", "decoder_pos_embed"))
    assert facts["data"] == {"name": "synthetic", "source": "generated", "train_images": 256, "test_images": 64,
                             "classes": 10, "image_size": 32}
    assert facts["model"]["parameters"] == parameters  # the learned ones (the position embeddings are fixed)
    assert (facts["threads"], facts["global_batch"], facts["steps_per_epoch"], facts["precision"]) == (1, 64, 4, "fp32")
    assert facts["peak_lr"] > 0 and facts["compiled"] == "nothing (eager)" and facts["at_step"] == 0
    assert "256 train / 64 test images of 32 px, 10 classes" in err and "1 CPU thread;" in err
    assert "global batch 64, 4 steps an epoch" in err and "CPU thread and resumes" not in err
    assert "maelab: warning: only 4 optimizer steps (4 an epoch of batch 64 x 1 epoch): the lr schedule's" in err


def test_a_run_of_few_steps_is_warned_about_in_one_line_and_a_longer_one_is_not():
    from maelab.engine.run import FEW_STEPS, few_steps_warning

    line = few_steps_warning(21, 1, 21, 256)  # the README's old folder example: 21 steps at batch 256
    assert line is not None and "\n" not in line and "raise optim.epochs or lower optim.batch_size" in line
    assert "configs/own_images_cpu.yaml" in line
    assert few_steps_warning(FEW_STEPS, 23, 5, 128) is None and few_steps_warning(2300, 23, 100, 128) is None


def test_a_cpu_resume_with_another_thread_count_is_warned_about_and_recorded(tmp_path, tiny, capsys):
    threads = torch.get_num_threads()
    run_dir = pretrain(load_config(None, [*tiny, "optim.epochs=2", "train.stop_after_epochs=1", "train.threads=1",
                                          f"out_dir={tmp_path / 'r'}"]))
    assert load_checkpoint(checkpoint_path(run_dir))["threads"] == 1
    capsys.readouterr()
    try:
        resume(run_dir, ["train.threads=2"])
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert "resuming at step 4" in err
    assert "trained with 1 CPU thread and resumes with 2" in err and "set train.threads=1" in err
    starts = json.loads(RunLayout(run_dir).run_info.read_text())
    assert [s["threads"] for s in starts] == [1, 2] and starts[1]["at_step"] == 4
