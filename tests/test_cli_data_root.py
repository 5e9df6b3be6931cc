"""`maelab pretrain data.root=my_images` with data.name left at cifar10 is one line, exit 2: it trains on nothing
else (not a CIFAR-10 copy found elsewhere) and downloads nothing (issue 29)."""

from __future__ import annotations

import pytest
from PIL import Image

from maelab.cli import main
from tests.data.conftest import make_fake_cifar

RUN = ["model.preset=micro", "optim.batch_size=8", "optim.epochs=1", "train.progress=false"]


@pytest.mark.parametrize("cifar_elsewhere", [True, False])
def test_pretrain_on_a_root_of_images_without_data_name_is_one_line_exit_2(tmp_path, monkeypatch, capsys,
                                                                           cifar_elsewhere) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the default cache, where a download would go
    monkeypatch.delenv("MAELAB_DATA_DIR", raising=False)
    if cifar_elsewhere:
        monkeypatch.setenv("MAELAB_DATA_DIR", str(make_fake_cifar(tmp_path / "env").parent))
    (tmp_path / "my_images" / "cats").mkdir(parents=True)
    for k in range(4):
        Image.new("RGB", (16, 12), (50 * k, 90, 200)).save(tmp_path / "my_images" / "cats" / f"{k}.jpg")
    monkeypatch.chdir(tmp_path)
    code = main(["pretrain", *RUN, "data.root=my_images", "data.url=http://127.0.0.1:9/none.tar.gz",
                 f"out_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == ["maelab: error: data.root=my_images holds image files, not CIFAR-10: add "
                                        "data.name=folder (README.md#data)"]
    assert not (tmp_path / "run").exists() and not (tmp_path / "home" / ".cache" / "maelab").exists()  # no download
