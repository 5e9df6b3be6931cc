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
    from maelab.engine.run import SHORT_RUN, few_steps_warning

    line = few_steps_warning(21, 1, 21, 256)  # the README's old folder example: 21 steps at batch 256
    assert line is not None and "\n" not in line
    assert "raise optim.epochs (" in line and "or lower optim.batch_size" in line
    assert "optim.epochs=100 gives 100 steps" in line  # 1 step an epoch
    assert "optim.epochs=5 gives 100 steps" in few_steps_warning(46, 23, 2, 128)
    milder = few_steps_warning(180, 6, 30, 128)  # the newcomer's run that ended below its floor
    assert "can end below its random-init floor" in milder and "optim.epochs=84 gives 500 steps" in milder
    assert few_steps_warning(SHORT_RUN, 23, 22, 128) is None and few_steps_warning(2300, 23, 100, 128) is None


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


def test_inside_a_suite_a_start_note_shared_by_its_runs_is_said_once(monkeypatch, capsys):
    from maelab.engine import pretrain as pretrain_module

    monkeypatch.setattr(pretrain_module, "start_notes", lambda run: [f"warning: only 6 optimizer steps ({run})"])
    with pretrain_module.notes_said_once():
        for run in ("a", "a", "b", "a"):
            pretrain_module.print_notes(run)
    assert capsys.readouterr().err.count("maelab: warning: only 6") == 2  # "a" once, "b" once
    pretrain_module.print_notes("a")
    pretrain_module.print_notes("a")
    assert capsys.readouterr().err.count("maelab: warning: only 6") == 2  # outside a suite: every time


def test_the_banner_says_how_many_images_an_epoch_leaves_out_and_nothing_when_none(tmp_path, tiny, capsys):
    from maelab.engine.banner import left_out

    assert "each epoch leaves out 12 of the 60 images" in left_out(60, 16) and left_out(64, 16) == ""
    pretrain(load_config(None, [*tiny, "data.synthetic_train=250", "optim.epochs=1", f"out_dir={tmp_path / 'r'}"]))
    assert "3 steps an epoch × 1 (each epoch leaves out 58 of the 250 images" in capsys.readouterr().err


def test_an_image_folder_loaded_at_another_size_than_the_models_is_warned_about(tmp_path, capsys):
    from tests.test_cli_unlabeled import FOLDER, make_photos

    photos = make_photos(tmp_path / "photos")
    for size, warned in ((40, True), (32, False)):  # the micro preset's img_size is 32
        pretrain(load_config(None, [*FOLDER, f"data.image_size={size}", f"data.root={photos}",
                                    f"data.cache_dir={tmp_path / 'cache'}", f"out_dir={tmp_path / str(size)}"]))
        err = capsys.readouterr().err
        assert ("loaded at data.image_size=40 px and resized to the model's 32 px at every step" in err) == warned
        assert ("set data.image_size=32, or model.img_size=40" in err) == warned
    from maelab.engine.run import resize_note

    assert resize_note(32, 48, 6).endswith("set data.image_size=48")  # 32 px is no whole number of 6-px patches
