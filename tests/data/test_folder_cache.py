"""A large image folder is decoded once into a .npy cache file and memory-mapped; the cache follows the files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from maelab.config import DataConfig
from maelab.data.datasets import load_dataset
from maelab.data.folder_cache import FolderStore, decoded_bytes
from maelab.errors import DataError
from tests.data.test_folder import make_image_folder
from tests.data.test_folder_unlabeled import make_tree


def is_file_mapped(x: torch.Tensor, path: Path) -> bool:
    """True when the storage of ``x`` lies in a memory map of the file ``path`` (Linux /proc/self/maps)."""
    ptr = x.untyped_storage().data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        lo, hi = (int(v, 16) for v in parts[0].split("-"))
        if lo <= ptr < hi:
            return len(parts) == 6 and Path(parts[5]) == path
    return False


needs_proc_maps = pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="reads Linux's /proc/self/maps")


def folder_cfg(root: Path, cache: Path, max_memory_gib: float, **more) -> DataConfig:
    return DataConfig(name="folder", root=str(root), image_size=8, cache_dir=str(cache),
                      max_memory_gib=max_memory_gib, **more)


def cache_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("folders/*/*.npy"))


def test_the_limit_is_bytes_per_image_times_images() -> None:
    assert decoded_bytes(1, 32) == 3072 and decoded_bytes(1_000_000, 32) / 2**30 == pytest.approx(2.86, abs=0.01)
    store = FolderStore(Path("r"), Path("c"), max_bytes=decoded_bytes(10, 8))
    assert not store.mapped(10, 8) and store.mapped(11, 8)


@needs_proc_maps
def test_above_the_limit_an_unlabeled_folder_is_memory_mapped_with_the_same_pixels(tmp_path) -> None:
    root = make_tree(tmp_path / "photos")
    in_memory = load_dataset(folder_cfg(root, tmp_path / "cache", 4.0), seed=0)
    assert not in_memory.mapped and cache_files(tmp_path / "cache") == []
    mapped = load_dataset(folder_cfg(root, tmp_path / "cache", 0), seed=0)  # 0 GiB: every folder goes to disk
    [cache] = cache_files(tmp_path / "cache")
    assert cache.name.startswith("unlabeled-8px-") and cache.stat().st_size >= decoded_bytes(5, 8)
    assert mapped.mapped and is_file_mapped(mapped.x_train, cache)  # not loaded into RAM
    assert not is_file_mapped(in_memory.x_train, cache)
    assert torch.equal(mapped.x_train, in_memory.x_train)
    assert (mapped.mean, mapped.std) == (in_memory.mean, in_memory.std)
    index = torch.tensor([4, 0, 2, 2])
    assert torch.equal(mapped.x_train[index], in_memory.x_train[index])  # how a training step gathers its batch
    again = load_dataset(folder_cfg(root, tmp_path / "cache", 0), seed=0)
    assert cache_files(tmp_path / "cache") == [cache] and is_file_mapped(again.x_train, cache)  # reused


@needs_proc_maps
def test_a_labelled_folder_maps_both_splits_and_keeps_its_labels(tmp_path) -> None:
    root = make_image_folder(tmp_path / "labelled")
    in_memory = load_dataset(folder_cfg(root, tmp_path / "cache", 4.0), seed=0)
    mapped = load_dataset(folder_cfg(root, tmp_path / "cache", 0), seed=0)
    train, test = (next((tmp_path / "cache").glob(f"folders/*/{split}-8px-*.npy")) for split in ("train", "test"))
    assert is_file_mapped(mapped.x_train, train) and is_file_mapped(mapped.x_test, test)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(mapped, name), getattr(in_memory, name)), name
    assert mapped.classes == in_memory.classes


@needs_proc_maps
def test_a_mapped_set_stays_on_the_cpu_when_the_dataset_moves(tmp_path) -> None:
    ds = load_dataset(folder_cfg(make_image_folder(tmp_path / "labelled"), tmp_path / "cache", 0), seed=0)
    moved = ds.to("meta")  # stands for a GPU: the labels move, the mapped images stay where the file is
    assert moved.x_train.device.type == "cpu" and moved.x_test.device.type == "cpu"
    assert moved.y_train.device.type == "meta" and moved.y_test.device.type == "meta"
    [cache] = (tmp_path / "cache").glob("folders/*/train-8px-*.npy")
    assert is_file_mapped(moved.x_train, cache)


def test_a_changed_file_rebuilds_the_cache_and_removes_the_stale_one(tmp_path) -> None:
    root = make_tree(tmp_path / "photos")
    cfg = folder_cfg(root, tmp_path / "cache", 0)
    first = load_dataset(cfg, seed=0).x_train.clone()
    [old] = cache_files(tmp_path / "cache")
    Image.new("RGB", (12, 9), (1, 2, 3)).save(root / "a.png")  # same name, new pixels
    st = (root / "a.png").stat()
    os.utime(root / "a.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a new mtime even on a coarse clock
    second = load_dataset(cfg, seed=0).x_train
    [new] = cache_files(tmp_path / "cache")
    assert new != old and not old.exists()
    assert second[0, 0, 0].tolist() == [1, 2, 3] and torch.equal(second[1:], first[1:])
    Image.new("RGB", (5, 5), (7, 7, 7)).save(root / "b" / "added.png")  # a new file: a new cache of 6 images
    assert load_dataset(cfg, seed=0).x_train.shape[0] == 6 and cache_files(tmp_path / "cache") != [new]


def test_a_file_rewritten_with_its_size_and_mtime_restored_rebuilds_the_cache(tmp_path) -> None:
    # BMPs of one size are byte-for-byte the same length; cp -p, rsync -t, tar x and reproducible archives restore
    # the mtime: the cache kept the old pixels (issue 29)
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (10 + i, 10, 10)).save(root / f"{i}.bmp")
    cfg = folder_cfg(root, tmp_path / "cache", 0)
    assert load_dataset(cfg, seed=0).x_train[0, 0, 0].tolist() == [10, 10, 10]
    st = (root / "0.bmp").stat()
    Image.new("RGB", (8, 8), (200, 0, 0)).save(root / "0.bmp")
    os.utime(root / "0.bmp", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (root / "0.bmp").stat().st_size == st.st_size and (root / "0.bmp").stat().st_mtime_ns == st.st_mtime_ns
    assert load_dataset(cfg, seed=0).x_train[0, 0, 0].tolist() == [200, 0, 0]
    assert len(cache_files(tmp_path / "cache")) == 1  # the stale one deleted


def test_a_crash_while_decoding_leaves_no_cache_file(tmp_path, monkeypatch) -> None:
    root = make_tree(tmp_path / "photos")
    (root / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png cannot be decoded"):
        load_dataset(folder_cfg(root, tmp_path / "cache", 0), seed=0)
    assert list((tmp_path / "cache").rglob("*.*")) == []  # neither a cache nor a temporary file is left


def test_an_unwritable_cache_folder_is_one_line_naming_the_fixes(tmp_path, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("maelab.atomic.tempfile.mkstemp", refuse)  # folder_cache: atomic.temp_beside
    with pytest.raises(DataError, match=r"cannot write the image cache in .* \(Permission denied\): set "
                                        r"data.cache_dir to a writable folder, or raise data.max_memory_gib"):
        load_dataset(folder_cfg(make_tree(tmp_path / "photos"), tmp_path / "cache", 0), seed=0)
