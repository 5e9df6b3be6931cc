"""Camera and phone JPEGs stored sideways with an EXIF Orientation tag are decoded upright, as viewers show them,
wherever maelab decodes user images: the folder dataset (in memory and through its cache) and `reconstruct`'s
`load_images` (issue 29)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from maelab.api import load_images
from maelab.config import DataConfig
from maelab.data import folder_cache
from maelab.data.datasets import load_dataset
from maelab.data.folder import decode_image, load_unlabeled_folder
from maelab.data.folder_cache import FolderStore

ORIENTATION = 0x0112
# how the stored pixels are turned from the upright image for each tag (the inverse of what a viewer applies)
STORED = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
SIZE = 16


def upright() -> Image.Image:
    """48 x 32 (wider than high), four quadrants of four colours: any turn or flip moves them."""
    a = np.zeros((32, 48, 3), dtype=np.uint8)
    a[:16, :24], a[:16, 24:], a[16:, :24], a[16:, 24:] = (220, 20, 20), (20, 200, 20), (20, 20, 220), (230, 220, 30)
    return Image.fromarray(a)


def camera_jpeg(path: Path, orientation: int) -> Path:
    """The upright image stored turned, as a camera does, with the EXIF tag that says how to show it."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    upright().transpose(STORED[orientation]).save(path, "JPEG", quality=100, subsampling=0, exif=exif.tobytes())
    return path


def expected(tmp_path: Path) -> np.ndarray:
    """The upright image decoded as any image is (lossless PNG, no tag): ``[SIZE, SIZE, 3]`` uint8."""
    upright().save(tmp_path / "upright.png")
    return decode_image(tmp_path / "upright.png", SIZE)


def distance(a: np.ndarray | torch.Tensor, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 images."""
    return float(np.abs(np.asarray(a, dtype=np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_a_jpeg_with_an_exif_orientation_is_decoded_upright(tmp_path, monkeypatch, orientation) -> None:
    path = camera_jpeg(tmp_path / "photo.jpg", orientation)
    with Image.open(path) as img:
        assert img.getexif()[ORIENTATION] == orientation
        assert distance(np.asarray(img)[:4, :4], np.asarray(upright())[:4, :4]) > 60  # really stored turned
    want = expected(tmp_path)
    assert distance(decode_image(path, SIZE), want) < 3  # JPEG loss only
    monkeypatch.setattr(ImageOps, "exif_transpose", lambda img, in_place=False: None)  # the tag ignored
    assert distance(decode_image(path, SIZE), want) > 40  # sideways (or upside down): the fault this fixes


def test_training_and_reconstruct_decode_camera_photos_upright(tmp_path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    for orientation in sorted(STORED):
        camera_jpeg(root / f"{orientation}.jpg", orientation)
    want = expected(tmp_path)
    in_memory = load_unlabeled_folder(root, SIZE)
    mapped = load_unlabeled_folder(root, SIZE, FolderStore(root, tmp_path / "cache", max_bytes=0))
    from_api = load_images(sorted(root.iterdir()), SIZE)  # maelab.api.reconstruct's decoding
    for x in (in_memory, mapped, from_api):
        assert x.shape == (3, SIZE, SIZE, 3)
        assert all(distance(img, want) < 3 for img in x)


def test_a_cache_decoded_before_the_fix_is_not_reused(tmp_path, monkeypatch) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    camera_jpeg(root / "6.jpg", 6)
    cfg = DataConfig(name="folder", root=str(root), image_size=SIZE, cache_dir=str(tmp_path / "cache"),
                     max_memory_gib=0)
    store = FolderStore(root, tmp_path / "cache", 0)
    with monkeypatch.context() as old:  # the cache file an older maelab wrote: its format, the photo sideways
        old.setattr(folder_cache, "FORMAT", "maelab-folder-cache-1")
        old.setattr(ImageOps, "exif_transpose", lambda img, in_place=False: None)
        sideways = load_dataset(cfg, seed=0).x_train.clone()
        stale = store.cache_file("unlabeled", [root / "6.jpg"], SIZE)
    assert stale.is_file() and distance(sideways[0], expected(tmp_path)) > 40
    x = load_dataset(cfg, seed=0).x_train
    assert distance(x[0], expected(tmp_path)) < 3
    assert not stale.exists() and len(list((tmp_path / "cache").glob("folders/*/*.npy"))) == 1


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
@pytest.mark.parametrize("orientation", [6, 8])
def test_an_uncompressed_tiff_with_a_quarter_turn_orientation_is_decoded_upright(tmp_path, mode, orientation) -> None:
    """Pillow turns TIFFs upright itself, but garbled these (uncompressed, memory-mapped when opened by name)."""
    grey = np.asarray(upright().convert("L"))
    image = Image.fromarray(grey.astype(np.uint16) * 257) if mode == "I;16" else upright().convert(mode)
    image.save(tmp_path / "upright.tif")
    image.transpose(STORED[orientation]).save(tmp_path / "turned.tif", tiffinfo={ORIENTATION: orientation})
    with Image.open(tmp_path / "turned.tif") as img:
        assert img.mode == mode and img.tag_v2[ORIENTATION] == orientation
    assert np.array_equal(decode_image(tmp_path / "turned.tif", SIZE), decode_image(tmp_path / "upright.tif", SIZE))
