"""A YAML file is read as written: a key given twice in one mapping is refused, naming the file, the key and
both lines (PyYAML keeps the last in silence); anchors and merge keys still work."""

import re

import pytest
import yaml

from maelab.ablate import load_suite
from maelab.cli import main
from maelab.config import load_config
from maelab.errors import ConfigError
from tests.ablate.conftest import BASE, SUITE

TWO_OPTIM = """\
name: twice
optim:
  epochs: 2
model:
  preset: micro
optim:
  lr: 1.0e-3
"""


def refused(path, key, first, second):
    return f"^{re.escape(str(path))}: key {re.escape(key)} is given twice \\(lines {first} and {second}\\): keep one$"


def test_a_section_given_twice_is_refused_naming_the_file_key_and_both_lines(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(TWO_OPTIM)  # PyYAML alone: optim = {lr: 1e-3}, and the run trains the default 100 epochs
    with pytest.raises(ConfigError, match=refused(path, "optim", 2, 6)):
        load_config(path)


def test_a_leaf_given_twice_is_refused_with_its_dotted_name(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("optim:\n  epochs: 2\n  lr: 1.0e-3\n  epochs: 100\n")
    with pytest.raises(ConfigError, match=refused(path, "optim.epochs", 2, 4)):
        load_config(path)


def test_a_repeat_in_a_base_config_names_the_base(tmp_path):
    (tmp_path / "base.yaml").write_text("mask:\n  ratio: 0.6\n  ratio: 0.9\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nname: child\n")
    with pytest.raises(ConfigError, match=refused(tmp_path / "base.yaml", "mask.ratio", 2, 3)):
        load_config(tmp_path / "child.yaml")


def test_anchors_and_merge_keys_still_work_and_an_override_beside_a_merge_is_no_repeat(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("optim: &opt\n  epochs: 3\n  lr: 1.0e-3\n"
                    "finetune:\n  <<: *opt\n  epochs: &five 5\n"  # overrides the merged epochs: no repeat
                    "probe:\n  epochs: *five\n")
    cfg = load_config(path)
    assert (cfg.optim.epochs, cfg.optim.lr, cfg.finetune.epochs, cfg.finetune.lr, cfg.probe.epochs) == \
        (3, 1e-3, 5, 1e-3, 5)


def test_a_repeat_inside_a_mapping_that_is_merged_elsewhere_is_still_refused(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("optim: &opt\n  epochs: 3\n  epochs: 4\nfinetune:\n  <<: *opt\n")
    with pytest.raises(ConfigError, match=refused(path, "optim.epochs", 2, 3)):
        load_config(path)


def _suite_text(variants: str) -> str:
    head = {k: v for k, v in SUITE.items() if k not in ("variants", "claims")}
    return yaml.safe_dump(head) + variants


def test_a_variant_given_twice_in_a_suite_file_is_refused(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    path = tmp_path / "suite.yaml"
    text = _suite_text("variants:\n  baseline: {}\n  gan:\n    overrides: [gan.enabled=true]\n"
                       "  gan:\n    overrides: [gan.enabled=false]\n")
    path.write_text(text)
    first = text.splitlines().index("  gan:") + 1
    with pytest.raises(ConfigError, match=refused(path, "variants.gan", first, first + 2)):
        load_suite(path)


def test_a_repeat_in_a_config_a_suite_names_is_refused(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE) + "name: one\nname: two\n")
    path = tmp_path / "suite.yaml"
    path.write_text(_suite_text("variants:\n  baseline: {}\n"))
    lines = len(yaml.safe_dump(BASE).splitlines())
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'base.yaml'}: key name is given twice (lines "
                                                    f"{lines + 1} and {lines + 2}): keep one")):
        load_suite(path)


def test_the_cli_refuses_a_repeated_key_in_one_line_with_exit_code_2(tmp_path, capsys):
    path = tmp_path / "x.yaml"
    path.write_text(TWO_OPTIM)
    code = main(["pretrain", "-c", str(path), f"out_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"maelab: error: {path}: key optim is given twice (lines 2 and 6): keep one\n"
    assert not (tmp_path / "run").exists()
