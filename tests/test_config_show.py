"""The resolved config as commented YAML: every key with its value and its field's comment, readable back as -c."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from maelab.cli import main
from maelab.config import load_config, to_dict
from maelab.config.show import field_comments, show_config


@dataclass
class Inner:
    """A section.

    Its second paragraph is not the summary."""

    size: int = 3  # how big


@dataclass
class Example:
    # the comment lines right above a field
    # are its documentation
    path: str = "a # b"  # and so is the one beside it (a "#" inside a string is no comment)
    plain: int = 1

    count: int = 2  # beside only
    inner: Inner = field(default_factory=Inner)


def test_a_fields_comments_are_read_from_its_source_above_and_beside_it():
    comments = field_comments(Example)
    assert comments["path"] == (["the comment lines right above a field", "are its documentation"],
                                ['and so is the one beside it (a "#" inside a string is no comment)'])
    assert comments["plain"] == ([], []) and comments["count"] == ([], ["beside only"])


def test_the_shown_config_reads_back_as_the_same_config(tmp_path):
    cfg = load_config(None, ["optim.lr=1e-3", "data.name=synthetic", "probe.layers=4,5", "name='no'",
                             "train.stop_after_epochs=2"])
    path = tmp_path / "shown.yaml"
    path.write_text(show_config(cfg))
    assert to_dict(load_config(path)) == to_dict(cfg)
    assert yaml.safe_load(path.read_text())["optim"]["lr"] == 1e-3


def test_each_key_carries_its_fields_comment_and_each_section_its_summary():
    lines = show_config(load_config(None, [])).splitlines()
    assert "  name: cifar10  # cifar10 | synthetic | props | folder" in lines
    at = lines.index("  root: null")  # its documentation is the comment block above the field
    assert lines[at - 3].startswith("  # cifar10, props: a folder holding cifar-10-batches-py/")
    assert "data:  # Which images to train on and where they are." in lines
    assert any(line.startswith("mask:  # How much of each image is hidden") and "``" not in line for line in lines)
    assert "  log_every: 20  # steps between metrics lines (and host syncs)" in lines


def test_a_model_size_left_null_says_the_presets_value():
    lines = show_config(load_config(None, ["model.preset=keras", "model.depth=3"])).splitlines()
    assert "  img_size: null  # null: the preset's 48" in lines
    assert "  depth: 3" in lines


def test_a_folder_recipe_shows_without_a_folder_and_marks_data_root_as_required(capsys):
    assert main(["config", "show", "-c", "configs/own_images_cpu.yaml"]) == 0
    captured = capsys.readouterr()
    assert "  root: REQUIRED-your-image-folder" in captured.out and "give data.root=DIR to train" in captured.err
    assert "  epochs: 100" in captured.out  # the recipe's own values
    assert main(["config", "show", "-c", "configs/own_images_cpu.yaml", "optim.epochz=3"]) == 2  # others still refused
