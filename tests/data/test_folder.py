"""Image folders (train/<class>/*, test/<class>/*) built here from generated PNG and JPEG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maelab.config import DataConfig, load_config
from maelab.data.datasets import channel_stats, load_dataset
from maelab.data.folder import load_image_folder
from maelab.errors import ConfigError, DataError

CLASSES = ["apple", "mango", "zebra"]  # created in another order below: labels must follow the sorted names
SIZES = [(32, 32), (40, 20), (17, 17), (9, 50)]  # (width, height) of image k of each class: some not square


def colour(label: int, k: int) -> tuple[int, int, int]:
    return (40 + 60 * label, 10 + 30 * k, 250 - 20 * k)


def make_image_folder(root: Path, per_class: dict[str, int] | None = None) -> Path:
    """``root/train/<class>/img_k.png`` (4 per class, solid colours of several sizes) and 2 per class in test/."""
    per_class = per_class or {"train": 4, "test": 2}
    for split, n in per_class.items():
        for name in reversed(CLASSES):
            (root / split / name).mkdir(parents=True)
            for k in range(n):
                Image.new("RGB", SIZES[k], colour(CLASSES.index(name), k)).save(root / split / name / f"img_{k}.png")
    return root


def test_labels_follow_sorted_class_names_and_pixels_survive(tmp_path) -> None:
    x_train, y_train, x_test, y_test, classes = load_image_folder(make_image_folder(tmp_path), 16)
    assert classes == CLASSES
    assert x_train.shape == (12, 16, 16, 3) and x_train.dtype == torch.uint8 and x_test.shape == (6, 16, 16, 3)
    assert y_train.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and y_test.tolist() == [0, 0, 1, 1, 2, 2]
    assert y_train.dtype == torch.int64
    for i, (label, k) in enumerate((c, k) for c in range(3) for k in range(4)):
        expected = torch.tensor(colour(label, k), dtype=torch.uint8).expand(16, 16, 3)
        assert torch.equal(x_train[i], expected), (label, k)  # solid colours stay exact through any resize


def test_modes_files_and_nesting(tmp_path) -> None:
    root = make_image_folder(tmp_path, {"train": 1, "test": 1})
    cls = root / "train" / "mango"
    Image.new("L", (20, 30), 77).save(cls / "grey.png")
    Image.new("RGBA", (8, 8), (1, 2, 3, 0)).save(cls / "alpha.png")
    Image.new("RGB", (64, 48), (200, 100, 50)).save(cls / "photo.JPG", quality=95)
    (cls / "nested").mkdir()
    Image.new("P", (5, 5), 0).save(cls / "nested" / "palette.png")
    (cls / "notes.txt").write_text("not an image")
    (cls / ".hidden.png").write_bytes(b"editor backup, skipped")
    x, y, _, _, _ = load_image_folder(root, 8)
    assert y.tolist() == [0, 1, 1, 1, 1, 1, 2]  # mango: alpha, grey, img_0, nested/palette, photo.JPG (path order)
    alpha, grey, _, palette, photo = x[1:6]
    assert torch.equal(alpha, torch.tensor([1, 2, 3], dtype=torch.uint8).expand(8, 8, 3))  # alpha dropped
    assert torch.equal(grey, torch.full((8, 8, 3), 77, dtype=torch.uint8))
    assert (photo.int() - torch.tensor([200, 100, 50])).abs().max() <= 3  # JPEG is lossy
    assert torch.equal(palette, torch.zeros(8, 8, 3, dtype=torch.uint8))  # palette entry 0 is black


def test_load_dataset_gives_a_folder_dataset(tmp_path) -> None:
    root = make_image_folder(tmp_path / "imgs")
    ds = load_dataset(DataConfig(name="folder", root=str(root), image_size=8), seed=0)
    assert ds.name == "folder" and ds.classes == CLASSES and ds.image_size == 8 and ds.x_test.shape == (6, 8, 8, 3)
    assert (ds.mean, ds.std) == channel_stats(ds.x_train) and ds.source == str(root.resolve())
    assert ds.mean[0] == pytest.approx(np.mean([40, 100, 160]) / 255)  # red is 40 + 60 * label, balanced classes


def test_corrupt_file_names_the_file_and_the_fix(tmp_path) -> None:
    root = make_image_folder(tmp_path)
    bad = root / "test" / "mango" / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="broken.png cannot be decoded as an image") as info:
        load_image_folder(root, 16)
    assert str(bad) in str(info.value) and "replace or delete the file" in str(info.value)
    assert "\n" not in str(info.value)
    good = (root / "train" / "apple" / "img_0.png").read_bytes()
    bad.write_bytes(good[: len(good) // 2])  # truncated: the header is fine, the pixels are not
    with pytest.raises(DataError, match="broken.png cannot be decoded"):
        load_image_folder(root, 16)


def test_missing_split_or_classes(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist: data.root must hold train/<class>/ and test/<class>/"):
        load_image_folder(tmp_path / "nowhere", 16)
    root = make_image_folder(tmp_path / "a", {"train": 2})
    with pytest.raises(DataError, match="has no test/ folder"):
        load_image_folder(root, 16)
    (tmp_path / "b" / "train").mkdir(parents=True)
    (tmp_path / "b" / "test").mkdir()
    with pytest.raises(DataError, match="holds no class folders"):
        load_image_folder(tmp_path / "b", 16)


def test_class_folder_problems(tmp_path) -> None:
    root = make_image_folder(tmp_path)
    (root / "test" / "kiwi").mkdir()
    with pytest.raises(DataError, match="kiwi is a class that .*train does not have"):
        load_image_folder(root, 16)
    (root / "test" / "kiwi").rmdir()
    (root / "train" / "kiwi").mkdir()
    with pytest.raises(DataError, match=r"train/kiwi holds no images \(.png"):
        load_image_folder(root, 16)


def test_test_split_may_lack_a_class(tmp_path) -> None:
    root = make_image_folder(tmp_path)
    for p in (root / "test" / "apple").iterdir():
        p.unlink()
    (root / "test" / "apple").rmdir()
    _, _, _, y_test, classes = load_image_folder(root, 4)
    assert classes == CLASSES and y_test.tolist() == [1, 1, 2, 2]


def test_folder_needs_a_root_and_a_positive_size() -> None:
    with pytest.raises(ConfigError, match="data.name=folder needs data.root"):
        load_config(overrides=["data.name=folder"])
    with pytest.raises(ConfigError, match="data.image_size=0"):
        load_config(overrides=["data.name=folder", "data.root=x", "data.image_size=0"])
