"""PROPS-Classification on a small archive built here in the official format (the real one cannot be had).

Every fake image carries its origin in its first pixel: (label, instance number k, index in the file), so a
test can tell which instance file each loaded image came from.
"""

from __future__ import annotations

import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from maelab.config import DataConfig, load_config
from maelab.data import props
from maelab.data.datasets import channel_stats, find_files, load_dataset
from maelab.data.props import ARCHIVE, CLASSES, FOLDER, find_props, load_props
from maelab.errors import ConfigError, DataError
from maelab.presets import resolve_spec

REPO = Path(__file__).resolve().parents[2]
# three classes x three instances; instance k of a class holds k + 1 images
INSTANCES = [(c, k) for c in ("master_chef_can", "cracker_box", "mug") for k in (1, 2, 3)]
TEST_SPLIT = ["cracker_box_3", "master_chef_can_2", "mug_1"]  # file names without .pkl, as in the real meta.pkl


def write_instance(path: Path, label: int, k: int, n: int, **entries: object) -> None:
    """An instance pickle: random ``data`` uint8 [n, 32, 32, 3] whose pixel (0, 0) is (label, k, i)."""
    data = np.random.default_rng(label * 100 + k).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    data[:, 0, 0] = np.stack([np.full(n, label), np.full(n, k), np.arange(n)], axis=1)
    entry = {"data": data, "labels": [label] * n}
    entry.update(entries)
    path.write_bytes(pickle.dumps(entry, protocol=2))


def make_fake_props(root: Path, test_split: list[str] = TEST_SPLIT) -> Path:
    """``root/Progress-Objects-Sample`` with meta.pkl and the INSTANCES pickles; returns the folder."""
    folder = root / FOLDER
    folder.mkdir(parents=True)
    for name, k in INSTANCES:
        write_instance(folder / f"{name}_{k}.pkl", CLASSES.index(name), k, k + 1)
    meta = {"test_split": list(test_split), "label_names": CLASSES}
    (folder / "meta.pkl").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def make_props_archive(path: Path, folder: Path) -> str:
    """Pack ``folder`` as ``Progress-Objects-Sample/`` into a .tar.gz; returns its md5."""
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=FOLDER)
    return hashlib.md5(path.read_bytes()).hexdigest()


def _origins(x: torch.Tensor) -> list[tuple[int, int, int]]:
    return [tuple(p) for p in x[:, 0, 0].tolist()]


def _cfg(tmp_path: Path, **kw) -> DataConfig:
    kw.setdefault("download", False)
    return DataConfig(name="props", cache_dir=str(tmp_path / "cache"), **kw)


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# --- loading ----------------------------------------------------------------------------------------

def test_split_follows_meta_and_labels_follow_files(tmp_path) -> None:
    x_train, y_train, x_test, y_test = load_props(make_fake_props(tmp_path))
    held_out = {(CLASSES.index(n.rsplit("_", 1)[0]), int(n.rsplit("_", 1)[1])) for n in TEST_SPLIT}
    expected = {split: sorted((CLASSES.index(c), k, i) for c, k in INSTANCES for i in range(k + 1)
                              if ((CLASSES.index(c), k) in held_out) == (split == "test"))
                for split in ("train", "test")}
    assert sorted(_origins(x_train)) == expected["train"] and sorted(_origins(x_test)) == expected["test"]
    assert x_train.shape == (len(expected["train"]), 32, 32, 3) and x_train.dtype == torch.uint8
    assert y_train.dtype == torch.int64 and y_test.dtype == torch.int64
    assert torch.equal(y_train, x_train[:, 0, 0, 0].long()) and torch.equal(y_test, x_test[:, 0, 0, 0].long())


def test_order_is_fixed_and_shuffled(tmp_path) -> None:
    folder = make_fake_props(tmp_path)
    first, again = load_props(folder), load_props(folder)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    origins = _origins(first[0])
    assert origins != sorted(origins)  # not grouped by instance file: a split's first N images are mixed


def test_archive_is_read_in_place_like_the_folder(tmp_path, no_data_env) -> None:
    folder = make_fake_props(tmp_path / "src")
    (folder / "._mug_1.pkl").write_bytes(b"macOS metadata, not a pickle: skipped")
    root = tmp_path / "root"
    root.mkdir()
    make_props_archive(root / ARCHIVE, folder)
    found = find_props(_cfg(tmp_path, root=str(root)))
    assert found == root / ARCHIVE
    assert all(torch.equal(a, b) for a, b in zip(load_props(found), load_props(folder), strict=True))
    assert _listing(root) == [ARCHIVE] and not (tmp_path / "cache").exists()  # nothing unpacked anywhere


def test_load_dataset_gives_a_props_dataset(tmp_path, no_data_env) -> None:
    make_fake_props(tmp_path / "root")
    ds = load_dataset(_cfg(tmp_path, root=str(tmp_path / "root")), seed=0)
    assert ds.name == "props" and ds.classes == CLASSES and ds.num_classes == 10 and ds.image_size == 32
    assert (ds.mean, ds.std) == channel_stats(ds.x_train)
    assert all(0.4 < m < 0.6 for m in ds.mean)  # uniform random pixels
    assert ds.source == str((tmp_path / "root").resolve())
    assert find_files(_cfg(tmp_path, root=str(tmp_path / "root"))) == tmp_path / "root" / FOLDER


# --- finding it -------------------------------------------------------------------------------------

def test_folder_wins_over_archive_and_env_is_searched(tmp_path, monkeypatch) -> None:
    folder = make_fake_props(tmp_path / "env")
    make_props_archive(tmp_path / "env" / ARCHIVE, folder)
    monkeypatch.setenv("MAELAB_DATA_DIR", str(tmp_path / "env"))
    assert find_props(_cfg(tmp_path, root=str(tmp_path / "nothing-here"))) == folder
    assert find_props(_cfg(tmp_path, root=str(tmp_path / "env" / ARCHIVE))) == tmp_path / "env" / ARCHIVE


def test_absence_is_one_error_naming_the_folders(tmp_path, no_data_env) -> None:
    with pytest.raises(DataError) as info:
        load_dataset(_cfg(tmp_path, root=str(tmp_path / "r")), seed=0)
    message = str(info.value)
    assert message.startswith(f"PROPS not found: no {FOLDER}/ or {ARCHIVE} in ")
    assert str(tmp_path / "r") in message and str(tmp_path / "cache") in message
    assert "data.download is off" in message and "set MAELAB_DATA_DIR or data.root" in message
    assert "\n" not in message


# --- refusing bad files -----------------------------------------------------------------------------

class _CreatesFile:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


def test_malicious_meta_is_refused_and_runs_nothing(tmp_path) -> None:
    folder = make_fake_props(tmp_path / "f")
    victim = tmp_path / "pwned"
    (folder / "meta.pkl").write_bytes(pickle.dumps({"test_split": _CreatesFile(victim)}, protocol=2))
    with pytest.raises(DataError, match=r"refusing to unpickle .*open from .*meta\.pkl: .*not a PROPS meta\.pkl"):
        load_props(folder)
    make_props_archive(tmp_path / ARCHIVE, folder)
    with pytest.raises(DataError, match=rf"refusing to unpickle .*open from {FOLDER}/meta\.pkl in .*{ARCHIVE}"):
        load_props(tmp_path / ARCHIVE)
    assert not victim.exists()


def test_malicious_instance_is_refused(tmp_path) -> None:
    folder = make_fake_props(tmp_path / "f")
    victim = tmp_path / "pwned"
    (folder / "mug_2.pkl").write_bytes(pickle.dumps({"data": _CreatesFile(victim), "labels": []}, protocol=2))
    with pytest.raises(DataError, match=r"refusing to unpickle .* from .*mug_2\.pkl: the file is not a PROPS pickle"):
        load_props(folder)
    assert not victim.exists()


@pytest.mark.parametrize(
    ("entries", "pattern"),
    [
        ({"data": np.zeros((3, 3, 32, 32), np.uint8)}, r"'data' is uint8 \[3, 3, 32, 32\], expected uint8 \[N, 32, 32"),
        ({"data": np.zeros((3, 32, 32, 3), np.float32)}, r"'data' is float32"),
        ({"labels": [8, 8]}, r"'labels' must be 3 integers"),
        ({"labels": [8, 8, 10]}, r"labels must be in \[0, 10\), found 8..10"),
        ({"pixels": 1, "data": None}, r"'data' is NoneType"),
    ],
)
def test_malformed_instance_names_the_file(tmp_path, entries, pattern) -> None:
    folder = make_fake_props(tmp_path)
    write_instance(folder / "mug_2.pkl", 8, 2, 3, **entries)
    with pytest.raises(DataError, match=pattern) as info:
        load_props(folder)
    assert "mug_2.pkl" in str(info.value) and "replace it with the official file" in str(info.value)


def test_meta_problems_are_clear(tmp_path) -> None:
    folder = make_fake_props(tmp_path, test_split=[*TEST_SPLIT, "mug_9"])
    with pytest.raises(DataError, match=r"mug_9\.pkl \(in meta\.pkl's test_split\) is missing"):
        load_props(folder)
    (folder / "meta.pkl").write_bytes(pickle.dumps({"classes": CLASSES}, protocol=2))
    with pytest.raises(DataError, match="has no 'test_split' list"):
        load_props(folder)
    (folder / "meta.pkl").unlink()
    with pytest.raises(DataError, match="meta.pkl is missing from"):
        load_props(folder)


def test_archive_without_the_folder_or_corrupt(tmp_path) -> None:
    (tmp_path / "junk.pkl").write_bytes(b"x")
    with tarfile.open(tmp_path / ARCHIVE, "w:gz") as tar:
        tar.add(tmp_path / "junk.pkl", arcname="elsewhere/junk.pkl")
    with pytest.raises(DataError, match=f"has no {FOLDER}/\\*.pkl files"):
        load_props(tmp_path / ARCHIVE)
    (tmp_path / ARCHIVE).write_bytes(b"not a tar archive")
    with pytest.raises(DataError, match="cannot be read as a tar archive"):
        load_props(tmp_path / ARCHIVE)


# --- downloading (from a local HTTP server) --------------------------------------------------------

@pytest.fixture
def props_site(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    md5 = make_props_archive(served / ARCHIVE, make_fake_props(tmp_path / "src"))
    return served, md5


def test_download_is_checked_and_unpacked_into_the_cache(tmp_path, props_site, serve_dir, no_data_env,
                                                          closed_port_url) -> None:
    served, md5 = props_site
    cfg = _cfg(tmp_path, download=True, url=f"{serve_dir(served)}/{ARCHIVE}", md5=md5)
    ds = load_dataset(cfg, seed=0)
    assert _listing(tmp_path / "cache") == [FOLDER] + [f"{FOLDER}/{p}" for p in _listing(tmp_path / "src" / FOLDER)]
    assert ds.source == str((tmp_path / "cache").resolve()) and len(ds.x_train) == 18 and len(ds.x_test) == 9
    # found in the cache next time: no second download
    assert find_props(_cfg(tmp_path, download=True, url=closed_port_url, md5=md5)) == tmp_path / "cache" / FOLDER


def test_wrong_md5_is_refused_with_the_manual_route(tmp_path, props_site, serve_dir, no_data_env) -> None:
    served, md5 = props_site
    cfg = _cfg(tmp_path, download=True, url=f"{serve_dir(served)}/{ARCHIVE}", md5="0" * 32)
    with pytest.raises(DataError, match=f"has md5 {md5}, expected 0{{32}}") as info:
        find_props(cfg)
    assert f"fetch {ARCHIVE} by hand" in str(info.value) and "\n" not in str(info.value)
    assert _listing(tmp_path / "cache") == []


def test_default_source_is_the_google_drive_file() -> None:
    assert props.DRIVE_ID in props.URL and props.URL.startswith("https://drive.usercontent.google.com/download?")
    assert props.MD5 == "b32c587684bb54a9f918b6b081a18e28"
    assert DataConfig(name="props").url is None  # None = the official source of data.name


# --- config -----------------------------------------------------------------------------------------

def test_bad_md5_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="data.md5='abc' is not an md5"):
        load_config(overrides=["data.name=props", "data.md5=abc"])


@pytest.mark.parametrize("name", ["props_vit_tiny", "props_keras"])
def test_props_configs_are_32px_patch_4(name) -> None:
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    spec = resolve_spec(cfg.model)
    assert cfg.data.name == "props" and cfg.name == name and (spec.img_size, spec.patch_size) == (32, 4)
