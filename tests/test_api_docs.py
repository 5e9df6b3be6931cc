"""docs/api.md runs: every ```python block, in order, in one namespace, from a folder holding my_photo.png."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from tests.conftest import REPO

PAGE = REPO / "docs" / "api.md"


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)


def test_the_api_page_has_a_snippet_for_each_task():
    code = "\n".join(snippets())
    for call in ("mae.pretrain(", "mae.open_run(", "mae.reconstruct(", "mae.features(", "mae.probe(",
                 "mae.attention(", "export("):
        assert call in code, call


def test_every_snippet_of_the_api_page_runs_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save("my_photo.png")  # not square
    namespace: dict = {}
    for i, code in enumerate(snippets()):
        exec(compile(code, f"{PAGE.name} snippet {i + 1}", "exec"), namespace)  # noqa: S102
    # what the snippets computed is what they say
    assert namespace["rec"].recon.shape == (1, 3, 32, 32) and int(namespace["rec"].mask.sum()) == 48
    assert namespace["final"].shape == (1, 64) and namespace["block1"].shape == (1, 64)
    assert 0 < namespace["result"]["top1"] <= 100
    assert namespace["maps"].shape == (1, 2, 8, 8)
    assert (tmp_path / "reconstruction.png").is_file()
    assert (tmp_path / "runs" / "api_demo" / "eval" / "probe.json").is_file()
