"""Which files of an image folder are read (issue 29): hidden paths never (tool copies such as .ipynb_checkpoints/
doubled a set), links to folders followed once (a loop ends), and a labelled folder's test split is not pretrained
on as an unlabeled folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from maelab.config import DataConfig
from maelab.data import folder_files
from maelab.data.datasets import load_dataset
from maelab.data.folder import load_image_folder, load_unlabeled_folder
from maelab.errors import DataError
from tests.data.test_folder import CLASSES, make_image_folder
from tests.data.test_folder_unlabeled import TREE, make_tree


def hide_copies(folder: Path) -> None:
    """Beside the images of ``folder`` (not below), what tools leave: Jupyter's .ipynb_checkpoints/ copies, macOS's
    ._* AppleDouble files and .DS_Store."""
    images = [p for p in folder.iterdir() if p.is_file()]
    (folder / ".ipynb_checkpoints").mkdir()
    for p in images:
        shutil.copy(p, folder / ".ipynb_checkpoints" / f"{p.stem}-checkpoint{p.suffix}")
        shutil.copy(p, folder / f"._{p.name}")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")


def test_a_labelled_folder_reads_only_its_visible_images_and_classes(tmp_path) -> None:
    root = make_image_folder(tmp_path / "labelled")  # 4 train and 2 test images in each of 3 classes
    for split in ("train", "test"):
        for name in CLASSES:
            hide_copies(root / split / name)
        shutil.copytree(root / split / CLASSES[0], root / split / ".ipynb_checkpoints")  # not a class
    shutil.copytree(root / "train", root / ".ipynb_checkpoints" / "train")
    x_train, y_train, x_test, y_test, classes = load_image_folder(root, 8)
    assert classes == CLASSES
    assert (len(x_train), len(x_test)) == (12, 6)  # 24 / 12 when the copies were read
    assert y_train.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and y_test.tolist() == [0, 0, 1, 1, 2, 2]


def test_an_unlabeled_tree_skips_hidden_folders_and_files(tmp_path) -> None:
    root = make_tree(tmp_path / "photos")
    hide_copies(root / "b")
    (root / ".Trash-0" / "files").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / ".Trash-0" / "files" / "deleted.png")
    assert len(load_unlabeled_folder(root, 8)) == len(TREE) == 5
    under_hidden = make_tree(tmp_path / ".cache" / "photos")  # only names below data.root count
    assert len(load_dataset(DataConfig(name="folder", root=str(under_hidden), image_size=8), seed=0).x_train) == 5


def test_links_to_folders_are_followed_once_and_a_loop_ends(tmp_path) -> None:
    root = make_tree(tmp_path / "photos")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("x.png", "y.JPG"):
        Image.new("RGB", (8, 8), (9, 9, 9)).save(elsewhere / name)
    os.symlink(elsewhere, root / "linked")  # the user's: ln -s /data/2019 photos/2019
    os.symlink(elsewhere, root / "linked_again")  # the same real folder: read once
    os.symlink(root, root / "b" / "loop")  # back up the tree
    files = folder_files.image_files(root)
    assert len(files) == 7 and [p.name for p in files if p.parent.name.startswith("linked")] == ["x.png", "y.JPG"]
    assert len(load_unlabeled_folder(root, 8)) == 7


def test_a_broken_link_or_an_unreadable_folder_is_one_line(tmp_path, monkeypatch) -> None:
    root = make_tree(tmp_path / "photos")
    os.symlink(tmp_path / "gone.jpg", root / "b" / "photo.jpg")
    with pytest.raises(DataError, match=r"photos/b/photo.jpg is a link to a missing file: fix the link or delete it"):
        load_unlabeled_folder(root, 8)
    (root / "b" / "photo.jpg").unlink()
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "deep":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(folder_files.os, "scandir", scandir)
    with pytest.raises(DataError, match=r"the folder .*photos/b/deep cannot be read \(Permission denied\): make it "
                                        r"readable or move it out of data.root"):
        load_unlabeled_folder(root, 8)


def test_a_labelled_folders_test_split_is_not_pretrained_on_as_an_unlabeled_folder(tmp_path) -> None:
    root = make_image_folder(tmp_path / "labelled")
    test = root / "test"
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(name="folder", root=str(test), image_size=8), seed=0)
    assert str(err.value) == (f"data.root={test} is the test split of the labelled image folder {root} (train/ is "
                              "beside it): pretraining on it trains on the images evaluations test on; give "
                              f"data.root={root} (trains on train/, tests on test/) or data.root={root / 'train'}")
    assert len(load_dataset(DataConfig(name="folder", root=str(root / "train"), image_size=8), seed=0).x_train) == 12
    shutil.rmtree(root / "train")  # a test/ alone is no labelled set's test split: pretraining on it is allowed
    assert len(load_dataset(DataConfig(name="folder", root=str(test), image_size=8), seed=0).x_train) == 6
