"""`maelab config show` in a real process: the config pretrain would run with, and pretrain's one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

from maelab.config import load_config, to_dict
from tests.conftest import REPO


def maelab(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "maelab", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_config_show_prints_a_file_plus_overrides_resolved_as_pretrain_resolves_them(tmp_path):
    config = REPO / "configs" / "cifar10_keras.yaml"
    shown = maelab("config", "show", "-c", str(config), "optim.epochs=3", "mask.schedule=linear")
    assert shown.returncode == 0 and shown.stderr == ""
    assert "  epochs: 3\n" in shown.stdout and "  schedule: linear  # constant | random | linear" in shown.stdout
    (tmp_path / "shown.yaml").write_text(shown.stdout)
    expected = load_config(config, ["optim.epochs=3", "mask.schedule=linear"])
    assert to_dict(load_config(tmp_path / "shown.yaml")) == to_dict(expected)


def test_a_bad_override_is_the_same_one_line_error_as_pretrains(tmp_path):
    shown = maelab("config", "show", "optim.lrr=0.1")
    pretrain = maelab("pretrain", "optim.lrr=0.1", f"out_dir={tmp_path / 'run'}")
    assert shown.returncode == pretrain.returncode == 2 and shown.stdout == ""
    assert shown.stderr == pretrain.stderr
    assert shown.stderr.splitlines() == ["maelab: error: unknown config key 'optim.lrr' in the command-line overrides "
                                         "(did you mean 'optim.lr'?)"]


def test_pretrain_help_points_to_config_show():
    result = maelab("pretrain", "--help")
    assert result.returncode == 0 and "maelab config show" in result.stdout
