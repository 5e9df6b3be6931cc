"""A data.root holding another dataset's files than data.name reads is refused in one line, never replaced by
other data found elsewhere or downloaded (issue 29)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from maelab.config import DataConfig, load_config
from maelab.data import locate
from maelab.data.datasets import find_files, load_dataset, on_disk
from maelab.data.roots import DataRootError, check_root
from maelab.errors import ConfigError
from tests.data.test_folder import make_image_folder
from tests.data.test_props import make_fake_props


def photos(root: Path) -> Path:
    """``root`` holding two loose JPEGs and a sub-folder with a PNG (no CIFAR-10, no train/ or test/)."""
    (root / "holiday").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "holiday/c.png"):
        Image.new("RGB", (20, 12), (200, 30, 40)).save(root / name)
    return root


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any download attempt fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(locate, "download_folder", refuse)


@pytest.mark.parametrize("layout", ["loose", "labelled"])
def test_images_in_root_with_data_name_cifar10_are_refused_even_with_cifar10_elsewhere(
        tmp_path, monkeypatch, make_fake_cifar, no_download, layout) -> None:
    make_fake_cifar(tmp_path / "env")  # the tester's case: CIFAR-10 on disk, where it was used instead
    monkeypatch.setenv("MAELAB_DATA_DIR", str(tmp_path / "env"))
    root = photos(tmp_path / "my_images") if layout == "loose" else make_image_folder(tmp_path / "my_images")
    cfg = DataConfig(root=str(root), cache_dir=str(tmp_path / "cache"))  # data.name left at cifar10
    expected = f"data.root={root} holds image files, not CIFAR-10: add data.name=folder (README.md#data)"
    for call in (lambda: load_dataset(cfg, seed=0), lambda: find_files(cfg), lambda: on_disk(cfg)):
        with pytest.raises(DataRootError) as err:
            call()
        assert str(err.value) == expected
    assert not (tmp_path / "cache").exists()


def test_images_in_root_without_cifar10_anywhere_never_download(tmp_path, no_data_env, no_download) -> None:
    root = photos(tmp_path / "my_images")
    with pytest.raises(DataRootError, match="holds image files, not CIFAR-10: add data.name=folder"):
        load_dataset(DataConfig(root=str(root), cache_dir=str(tmp_path / "cache")), seed=0)
    assert not (tmp_path / "cache").exists()


def test_props_and_synthetic_refuse_a_root_of_images_too(tmp_path, no_data_env, no_download) -> None:
    root = photos(tmp_path / "my_images")
    with pytest.raises(DataRootError, match=r"holds image files, not PROPS: set data.name=folder instead of "
                                            r"data.name=props"):
        load_dataset(DataConfig(name="props", root=str(root), cache_dir=str(tmp_path / "c")), seed=0)
    with pytest.raises(DataRootError, match=r"holds image files, and data.name=synthetic reads no folder \(it "
                                            r"generates its images\): set data.name=folder to train on them, or "
                                            r"drop data.root"):
        load_dataset(DataConfig(name="synthetic", root=str(root), synthetic_train=8, synthetic_test=8), seed=0)


def test_a_root_holding_another_dataset_names_the_data_name_that_reads_it(tmp_path, no_data_env, no_download,
                                                                          make_fake_cifar) -> None:
    cifar_root = make_fake_cifar(tmp_path / "cifar").parent
    props_root = make_fake_props(tmp_path / "props").parent
    cases = [("folder", cifar_root, "holds CIFAR-10 (cifar-10-batches-py/), not image files: set data.name=cifar10"),
             ("props", cifar_root, "holds CIFAR-10 (cifar-10-batches-py/), not PROPS: set data.name=cifar10"),
             ("cifar10", props_root, "holds PROPS (Progress-Objects-Sample/ or Progress-Objects-Sample.tar.gz), "
                                     "not CIFAR-10: add data.name=props"),
             ("synthetic", cifar_root, "holds CIFAR-10 (cifar-10-batches-py/), and data.name=synthetic reads no "
                                       "folder")]
    for name, root, fragment in cases:
        with pytest.raises(DataRootError, match=re.escape(f"data.root={root} {fragment}")):
            check_root(DataConfig(name=name, root=str(root), cache_dir=str(tmp_path / "c")))


def test_a_root_of_the_chosen_dataset_or_of_nothing_known_passes(tmp_path, no_data_env, make_fake_cifar) -> None:
    both = make_fake_cifar(tmp_path / "both").parent
    photos(both)  # CIFAR-10 and images side by side: each source reads its own
    for name in ("cifar10", "folder"):
        check_root(DataConfig(name=name, root=str(both)))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images")
    for root in (tmp_path / "empty", tmp_path / "missing"):  # CIFAR-10 searches on, as documented
        for name in ("cifar10", "props", "synthetic"):
            check_root(DataConfig(name=name, root=str(root)))


def test_data_url_and_md5_are_refused_where_nothing_is_downloaded() -> None:
    for name, extra in (("folder", ["data.root=x"]), ("synthetic", [])):
        for key, value in (("url", "http://127.0.0.1/a.tar.gz"), ("md5", "d" * 32)):
            fragment = f"names the archive that data.name=cifar10 or props downloads, and data.name={name} downloads"
            with pytest.raises(ConfigError, match=f"data.{key} {fragment} nothing: drop data.{key}"):
                load_config(overrides=[f"data.name={name}", *extra, f"data.{key}={value}"])
    assert load_config(overrides=["data.name=props", "data.url=http://127.0.0.1/p.tar.gz"]).data.url
