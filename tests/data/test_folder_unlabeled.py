"""An image folder without train/<class>/ and test/<class>/: every image under it, no labels, no test split."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from maelab.config import DataConfig
from maelab.data.datasets import load_dataset, require_labels
from maelab.data.folder import is_labelled, load_image_folder, load_unlabeled_folder
from maelab.errors import DataError
from tests.data.test_folder import CLASSES, make_image_folder

# (relative path, colour): created out of order, at several depths, with a class-like folder and an upper-case JPEG
TREE = [("b/deep/z.png", (10, 20, 30)), ("a.png", (200, 0, 0)), ("b/c.BMP", (0, 200, 0)),
        ("cat/1.webp", (0, 0, 200)), ("b/a.tif", (90, 90, 90))]


def make_tree(root: Path) -> Path:
    """``root`` holding the images of ``TREE`` (solid colours of several sizes) and files that are not images."""
    for k, (rel, rgb) in enumerate(TREE):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (12 + 5 * k, 9 + 3 * k), rgb).save(root / rel, **({"lossless": True} if rel.endswith(
            "webp") else {}))
    (root / "b" / "notes.txt").write_text("not an image")
    (root / "b" / ".hidden.png").write_bytes(b"an editor's backup, skipped")
    return root


def solid(rgb: tuple[int, int, int], size: int) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.uint8).expand(size, size, 3)


def test_every_image_of_the_tree_is_a_training_image_in_sorted_path_order(tmp_path) -> None:
    root = make_tree(tmp_path / "photos")
    assert not is_labelled(root)
    x = load_unlabeled_folder(root, 8)
    assert x.shape == (5, 8, 8, 3) and x.dtype == torch.uint8
    expected = [rgb for _, rgb in sorted(TREE, key=lambda t: (root / t[0]).as_posix())]
    for i, rgb in enumerate(expected):  # a.png, b/a.tif, b/c.BMP, b/deep/z.png, cat/1.webp
        assert torch.equal(x[i], solid(rgb, 8)), i


def test_the_dataset_of_an_unlabeled_folder_has_no_labels_and_no_test_split(tmp_path) -> None:
    root = make_tree(tmp_path / "photos")
    ds = load_dataset(DataConfig(name="folder", root=str(root), image_size=4), seed=0)
    assert not ds.labelled and ds.y_train is None and ds.x_test is None and ds.y_test is None
    assert ds.classes == [] and ds.num_classes == 0 and len(ds.x_train) == 5 and not ds.mapped
    x, y, split = ds.eval_images()
    assert x is ds.x_train and y is None and split == "train"  # recon and figures show training images
    moved = ds.to("cpu")
    assert moved.y_train is None and moved.x_test is None


def test_a_labelled_folder_is_read_as_before(tmp_path) -> None:
    root = make_image_folder(tmp_path / "labelled")
    assert is_labelled(root)
    ds = load_dataset(DataConfig(name="folder", root=str(root), image_size=8), seed=0)
    x_train, y_train, x_test, y_test, classes = load_image_folder(root, 8)
    assert ds.labelled and ds.classes == classes == CLASSES and not ds.mapped
    assert torch.equal(ds.x_train, x_train) and torch.equal(ds.y_train, y_train)
    assert torch.equal(ds.x_test, x_test) and torch.equal(ds.y_test, y_test)
    assert ds.eval_images()[2] == "test"


def test_limit_train_takes_a_seeded_random_subset_and_limit_test_is_refused(tmp_path) -> None:
    root = make_tree(tmp_path / "photos")
    cfg = DataConfig(name="folder", root=str(root), image_size=4, limit_train=3)
    a, b = (load_dataset(cfg, seed=s).x_train for s in (0, 0))
    assert a.shape == (3, 4, 4, 3) and torch.equal(a, b)
    colours = {tuple(img[0, 0].tolist()) for img in a}
    assert len(colours) == 3 and colours <= {rgb for _, rgb in TREE}  # three different images of the tree
    with pytest.raises(DataError, match=r"data.limit_test=2 limits a test split, .* set data.limit_test=null"):
        load_dataset(DataConfig(name="folder", root=str(root), image_size=4, limit_test=2), seed=0)


def test_a_train_folder_of_loose_images_is_refused_naming_both_fixes(tmp_path) -> None:
    root = tmp_path / "ambiguous"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    for k in range(3):
        Image.new("RGB", (6, 6), (k, k, k)).save(root / "train" / f"{k}.png")  # loose images, no class folders
    with pytest.raises(DataError) as info:
        load_dataset(DataConfig(name="folder", root=str(root), image_size=4), seed=0)
    message = str(info.value)
    assert "train holds no class folders: put each class's images in" in message
    assert f"give data.root={root / 'train'} to pretrain on its images without labels" in message
    assert "\n" not in message


def test_a_tree_without_images_is_refused(tmp_path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"empty holds no images \(.png.*: set data.root to a folder that does"):
        load_dataset(DataConfig(name="folder", root=str(tmp_path / "empty"), image_size=4), seed=0)


def test_require_labels_names_the_folder_the_command_and_the_fixes(tmp_path) -> None:
    root = make_tree(tmp_path / "photos")
    cfg = DataConfig(name="folder", root=str(root))
    with pytest.raises(DataError) as info:
        require_labels(cfg, "probe")
    assert str(info.value) == (f"data.root={root} has no train/<class>/ and test/<class>/ folders (an unlabeled image "
                               "folder): probe needs labels; give a labelled folder with data.root=DIR holding "
                               "train/<class>/ and test/<class>/, or evaluate on CIFAR-10 with data.name=cifar10")
    with pytest.raises(DataError, match=r"data.name=cifar10, or set eval.knn_every=0$"):
        require_labels(cfg, "the k-NN monitor", "set eval.knn_every=0")
    require_labels(DataConfig(name="folder", root=str(make_image_folder(tmp_path / "labelled"))), "probe")
    require_labels(DataConfig(name="synthetic"), "probe")
    require_labels(DataConfig(name="folder", root=str(tmp_path / "missing")), "probe")  # loading says it is missing
