"""A config is read as written (issue 29): a YAML 1.1 boolean word for a text setting is one line naming the key and
the fix, not a value changed in silence ("no" became the text "False")."""

from __future__ import annotations

import pytest

from maelab.config import load_config
from maelab.errors import ConfigError


@pytest.mark.parametrize("written", ["no", "off", "yes", "on", "false"])
def test_a_yaml_boolean_word_for_a_text_setting_is_refused_in_a_file_and_on_the_command_line(tmp_path, written):
    path = tmp_path / "c.yaml"
    path.write_text(f"name: {written}\ndata:\n  cache_dir: {written}\n")
    with pytest.raises(ConfigError, match=rf"^name in {path} is the YAML boolean (true|false) .* name is text: quote"):
        load_config(path)  # the run was named "False" (its folder runs/False-<time>)
    with pytest.raises(ConfigError, match=r"^data\.root in the command-line overrides is the YAML boolean"):
        load_config(None, [f"data.root={written}"])


def test_a_quoted_word_is_text_and_a_boolean_setting_still_takes_yes_and_no(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: 'no'\ntrain:\n  compile: no\n  progress: off\n")
    cfg = load_config(path, ["data.cache_dir='off'", "train.tensorboard=yes"])
    assert (cfg.name, cfg.data.cache_dir) == ("no", "off")
    assert (cfg.train.compile, cfg.train.progress, cfg.train.tensorboard) == (False, False, True)
