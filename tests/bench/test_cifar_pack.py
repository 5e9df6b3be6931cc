"""bench/cifar_pack.py: CIFAR-10's batch files packed into parts and unpacked byte for byte, a corrupt part refused."""

import hashlib
import os
import pickle
import shutil
import struct
import subprocess
import sys

import cifar_pack
import numpy as np
import pytest

from tests.conftest import REPO

REAL = REPO.parent / "shared" / "data" / "cifar-10-batches-py"


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2's str opcodes (SHORT_BINSTRING / BINSTRING), as the official batches were written."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_str8(self, obj: bytes) -> None:
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
                   + obj)
        self.memoize(obj)

    dispatch[bytes] = save_str8


def images(rows: int, seed: int) -> np.ndarray:
    """``[rows, 3072]`` uint8: smooth colour gradients plus noise, channel-planar as the batches (R, G, B planes)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    base = rng.integers(0, 160, (rows, 3, 1, 1)) + (yy * rng.integers(0, 3, (rows, 3, 1, 1))) + xx
    noisy = base + rng.integers(-6, 7, (rows, 3, 32, 32))
    return np.clip(noisy, 0, 255).astype(np.uint8).reshape(rows, 3072)


def write_official(path, rows=12, seed=0):
    """A batch in the official format: a protocol-2 pickle of the bytes-keyed dict, strings as Python 2 wrote them."""
    batch = {b"batch_label": b"testing batch 1 of 1", b"labels": [i % 10 for i in range(rows)],
             b"data": images(rows, seed), b"filenames": [b"img_%d.png" % i for i in range(rows)]}
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(batch)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A folder of two official-format batches and a meta file, packed into two parts."""
    root = tmp_path_factory.mktemp("cifar")
    src, dest = root / "cifar-10-batches-py", root / "parts"
    src.mkdir()
    write_official(src / "data_batch_1", seed=1)
    write_official(src / "test_batch", seed=2)
    (src / "batches.meta").write_bytes(pickle.dumps({"label_names": ["a"] * 10}, protocol=2))
    assert cifar_pack.main(["pack", str(src), str(dest), "--parts", "2"]) == 0
    return src, dest


def test_a_batch_in_the_official_format_packs_and_unpacks_to_the_same_bytes(packed, tmp_path):
    src, dest = packed
    assert sorted(p.name for p in dest.iterdir()) == ["1", "2"]
    assert sorted(p.name for p in (dest / "1").iterdir()) == ["data_batch_1.cpk", "index.json"]
    out = tmp_path / "out"
    for part in ("1", "2"):
        assert cifar_pack.main(["unpack", str(dest / part), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["batches.meta", "data_batch_1", "test_batch"]
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        assert hashlib.md5((out / name).read_bytes()).digest() == hashlib.md5((src / name).read_bytes()).digest()
    batch = pickle.loads((out / "data_batch_1").read_bytes(), encoding="latin1")  # as the originals are read
    assert batch["data"].shape == (12, 3072) and batch["batch_label"] == "testing batch 1 of 1"
    head, _ = cifar_pack.unpack_file((dest / "1" / "data_batch_1.cpk").read_bytes())
    assert head["method"] == "med-rans+lzma"  # the pixels went through the predictor, not lzma alone


def test_the_pixels_are_found_in_the_pickle_and_anything_else_is_kept_whole(tmp_path):
    write_official(tmp_path / "b", rows=3)
    data = (tmp_path / "b").read_bytes()
    offset, length = cifar_pack.find_pixels(data)
    assert length == 3 * 3072 and data[offset : offset + length] == images(3, 0).tobytes()
    assert cifar_pack.find_pixels(b"not a pickle") is None
    odd = pickle.dumps({"data": images(2, 0)}, protocol=2)  # Python 3's protocol 2: the array is not a raw string
    assert cifar_pack.unpack_file(cifar_pack.pack_file(odd, "odd"))[1] == odd


@pytest.mark.parametrize("where", ["header", "rest", "tables", "streams", "truncated"])
def test_a_corrupt_part_is_refused_with_exit_2_and_writes_nothing(packed, tmp_path, where, capsys):
    part = tmp_path / "part"
    shutil.copytree(packed[1] / "2", part)  # test_batch, then batches.meta: the damage is in the first
    cpk = part / "test_batch.cpk"
    data = bytearray(cpk.read_bytes())
    head, _ = cifar_pack.unpack_file(bytes(data))
    start = 12 + struct.unpack_from("<I", data, 8)[0]  # after the magic, the header's length and the header
    at = {"header": 20, "rest": start + head["rest"] // 2, "tables": start + head["rest"] + 100,
          "streams": len(data) - 500}.get(where)
    if at is None:
        del data[-100:]
    else:
        data[at] ^= 0x5A
    cpk.write_bytes(bytes(data))
    out = tmp_path / "out"
    assert cifar_pack.main(["unpack", str(part), str(out)]) == 2
    err = capsys.readouterr().err
    assert "test_batch.cpk" in err and "nothing written" in err
    if where == "streams":  # the rANS streams carry no check of their own: the decoded file's md5 catches it
        assert "md5" in err
    assert not out.exists() or not any(out.iterdir())  # not even batches.meta, nor a temporary file


def test_a_part_without_its_index_or_a_file_is_refused(packed, tmp_path):
    part = tmp_path / "part"
    shutil.copytree(packed[1] / "2", part)
    (part / "batches.meta.cpk").unlink()
    assert cifar_pack.main(["unpack", str(part), str(tmp_path / "out")]) == 2
    (part / "index.json").unlink()
    assert cifar_pack.main(["unpack", str(part), str(tmp_path / "out")]) == 2


def test_the_stage_script_packs_here_and_unpacks_there(packed, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(packed[0], data_dir / "cifar-10-batches-py")
    env = {**os.environ, "PYTHON": sys.executable, "STAGE_DIR": str(tmp_path / "staged")}
    script = str(REPO / "bench" / "gpu_stage_data.sh")
    run = subprocess.run(["bash", script, str(tmp_path / "gd"), str(data_dir)], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    for part in ("1", "2"):
        run = subprocess.run(["bash", script, "--unpack", str(tmp_path / "gd" / part)], env=env, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
    staged = tmp_path / "staged" / "cifar-10-batches-py"
    assert all((staged / n).read_bytes() == (packed[0] / n).read_bytes() for n in os.listdir(packed[0]))


@pytest.mark.slow
@pytest.mark.skipif(not (REAL / "data_batch_1").is_file(), reason="no CIFAR-10 in ../shared/data")
def test_the_real_data_batch_1_round_trips_at_under_55_percent():
    data = (REAL / "data_batch_1").read_bytes()
    packed = cifar_pack.pack_file(data, "data_batch_1")
    assert len(packed) < 0.55 * len(data)
    head, back = cifar_pack.unpack_file(packed)
    assert back == data and head["md5"] == hashlib.md5(data).hexdigest()


def test_gpu_check_stops_before_any_stage_on_a_corrupt_part(packed, tmp_path):
    part = tmp_path / "part"
    shutil.copytree(packed[1] / "1", part)
    cpk = part / "data_batch_1.cpk"
    cpk.write_bytes(cpk.read_bytes()[:-300])
    env = {**os.environ, "OUT": str(tmp_path / "out"), "STAGE_DIR": str(tmp_path / "staged"), "PYTHON": sys.executable}
    env.pop("MAELAB_DATA_DIR", None)
    run = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--dry-run", "--data", str(part), "cudagraphs"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "could not unpack" in run.stdout
    assert not (tmp_path / "out" / "throughput_cudagraphs.json").exists()
    assert not (tmp_path / "staged" / "cifar-10-batches-py" / "data_batch_1").exists()
