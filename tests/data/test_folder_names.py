"""The file each image of an image folder was decoded from: recorded by the loader, subset with the images."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path, PurePosixPath

import pytest
import torch
from PIL import Image

from maelab.config import DataConfig
from maelab.data.datasets import Dataset, load_dataset
from maelab.data.folder import load_folder

CLASSES = ["cat", "dog", "eel"]


def write_coded(path: Path, code: int) -> None:
    """A small solid PNG whose red channel is ``code``: the decoded image says which file it came from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (5 + code % 4, 6), (code, 255 - code, 7)).save(path)


def make_labelled(root: Path) -> Path:
    """``root/{train,test}/<class>/<code>.png`` with a code unique across the folder (8 train, 4 test a class)."""
    code = 0
    for split, n in (("train", 8), ("test", 4)):
        for cls in reversed(CLASSES):
            for _ in range(n):
                code += 1
                write_coded(root / split / cls / f"{code:03d}.png", code)
    return root


def make_unlabeled(root: Path) -> Path:
    """``root`` holding 12 coded images at several depths."""
    for code in range(1, 13):
        write_coded(root / ["", "a", "a/deep", "b"][code % 4] / f"{code:03d}.png", code)
    return root


def code_of(file: str) -> int:
    return int(PurePosixPath(file).stem)


def cfg_for(root: Path, tmp_path: Path, mapped: bool, **limits: int) -> DataConfig:
    return DataConfig(name="folder", root=str(root), image_size=4, cache_dir=str(tmp_path / "cache"),
                      max_memory_gib=0 if mapped else 4.0, **limits)


def assert_names_follow_images(x: torch.Tensor, files: tuple[str, ...]) -> None:
    assert len(files) == len(x)
    assert [code_of(f) for f in files] == x[:, 0, 0, 0].tolist()  # image i was decoded from files[i]


@pytest.mark.parametrize("mapped", [False, True])
def test_a_labelled_folder_names_each_image_by_its_file_through_the_limits(tmp_path, mapped) -> None:
    root = make_labelled(tmp_path / "labelled")
    cfg = cfg_for(root, tmp_path, mapped, limit_train=9, limit_test=5)
    for _ in range(2):  # decoded (into the cache when mapped), then read again (from it)
        ds = load_dataset(cfg, seed=3)
        assert ds.mapped == mapped and len(ds.x_train) == 9 and len(ds.x_test) == 5
        for x, y, files, split in ((ds.x_train, ds.y_train, ds.train_files, "train"),
                                   (ds.x_test, ds.y_test, ds.test_files, "test")):
            assert_names_follow_images(x, files)
            assert [f.split("/")[:2] for f in files] == [[split, ds.classes[int(c)]] for c in y]  # labels follow
        assert ds.eval_files() == ds.test_files
    whole = load_dataset(cfg_for(root, tmp_path, mapped), seed=3)
    assert len(set(whole.train_files)) == 24 and set(ds.train_files) < set(whole.train_files)
    assert whole.train_files[:2] == ("train/cat/017.png", "train/cat/018.png")  # relative to the root, sorted


@pytest.mark.parametrize("mapped", [False, True])
def test_an_unlabeled_folder_names_each_image_by_its_file_through_the_limit(tmp_path, mapped) -> None:
    root = make_unlabeled(tmp_path / "photos")
    ds = load_dataset(cfg_for(root, tmp_path, mapped, limit_train=7), seed=1)
    assert len(ds.x_train) == 7 and ds.test_files is None
    assert_names_follow_images(ds.x_train, ds.train_files)
    assert ds.eval_files() == ds.train_files  # figures show training images, named by their files
    assert load_dataset(cfg_for(root, tmp_path, mapped, limit_train=7), seed=2).train_files != ds.train_files
    assert "a/deep/002.png" in load_folder(root, 4).train_files


def test_copies_and_subsets_keep_the_names_and_a_mismatch_is_refused(tmp_path) -> None:
    ds = load_dataset(cfg_for(make_labelled(tmp_path / "labelled"), tmp_path, False), seed=0)
    moved = ds.to("meta")
    assert moved.train_files == ds.train_files and moved.test_files == ds.test_files
    part = ds.subset("test", torch.tensor([5, 0, 11]))
    assert part.test_files == tuple(ds.test_files[i] for i in (5, 0, 11)) and part.train_files == ds.train_files
    assert_names_follow_images(part.x_test, part.test_files)
    with pytest.raises(ValueError, match="test_files names 12 files for 2 test images"):
        replace(ds, x_test=ds.x_test[:2])


def test_generated_images_have_no_files() -> None:
    ds = load_dataset(DataConfig(name="synthetic", synthetic_train=20, synthetic_test=10, limit_test=4), seed=0)
    assert ds.train_files is None and ds.test_files is None and ds.eval_files() is None
    assert isinstance(ds, Dataset) and len(ds.x_test) == 4
