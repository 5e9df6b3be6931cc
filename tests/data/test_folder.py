"""Image folders (train/<class>/*, test/<class>/*) built here from generated PNG, JPEG and TIFF files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maelab.config import DataConfig, load_config
from maelab.data import folder
from maelab.data.datasets import channel_stats, load_dataset, require_labels
from maelab.data.folder import decode_image, load_image_folder
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
    with pytest.raises(DataError, match="does not exist: set data.root to a folder of images"):
        load_image_folder(tmp_path / "nowhere", 16)
    root = make_image_folder(tmp_path / "a", {"train": 2})
    with pytest.raises(DataError, match=r"has train/ but no test/ folder: .* give data.root=.*a/train"):
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


# --- modes with more than 8 bits a sample, and every other mode a folder can hold -------------------------------

GRADIENT = np.linspace(0, 65535, 1024).astype(np.uint16).reshape(32, 32)  # 16-bit grey, 0 to 65535


def png16(path: Path, a: np.ndarray) -> Path:
    """Write ``a: [H, W, C] uint16`` (C = 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA) as a 16-bit PNG, by hand: Pillow
    writes 16-bit PNGs only for grey."""
    h, w, c = a.shape
    raw = b"".join(b"\0" + a[y].astype(">u2").tobytes() for y in range(h))  # filter type 0 on every row
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
                     + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def tiff12(path: Path, a: np.ndarray) -> Path:
    """Write ``a: [H, W] uint16`` (values < 4096, W even) as a 12-bit grey TIFF, by hand: Pillow cannot write one."""
    h, w = a.shape
    first, second = a.reshape(-1, 2).T.astype(np.uint32)  # two samples in three bytes, most significant bits first
    data = np.stack([first >> 4, (first & 15) << 4 | second >> 8, second & 255], 1).astype(np.uint8).tobytes()
    short, long = 3, 4
    tags = [(256, short, w), (257, short, h), (258, short, 12), (259, short, 1), (262, short, 1),
            (273, long, 8 + 2 + 12 * 9 + 4), (277, short, 1), (278, short, h), (279, long, len(data))]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", t, k, 1, v) for t, k, v in tags)
    path.write_bytes(b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + data)
    return path


def decode(path: Path, mode: str) -> np.ndarray:
    """``path`` decoded at its own size -> ``[H, W, 3] uint8``, after checking Pillow opens it in ``mode``."""
    with Image.open(path) as img:
        assert img.mode == mode, f"the fixture was meant to open as {mode}, Pillow gives {img.mode}"
        size = img.size
    assert size[0] == size[1]
    return decode_image(path, size[0])


def grey(rgb: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` with three equal channels -> ``[H, W]`` int."""
    assert (rgb == rgb[..., :1]).all()
    return rgb[..., 0].astype(int)


def test_a_16_bit_grey_png_is_scaled_by_its_bit_depth_not_clipped_to_white(tmp_path) -> None:
    root = make_image_folder(tmp_path, {"train": 1, "test": 1})
    Image.fromarray(GRADIENT).save(root / "train" / "apple" / "deep.png")
    with Image.open(root / "train" / "apple" / "deep.png") as img:
        assert img.mode == "I;16"  # this Pillow's mode for 16-bit grey PNG (older ones gave I: tested below)
    x, _, _, _, _ = load_image_folder(root, 32)
    deep = grey(x[0].numpy())  # apple: deep.png, then img_0.png
    assert deep.mean() == pytest.approx(127.5, abs=0.1)  # was 254.4 when Pillow clipped at 255
    assert deep[0, 0] == 0 and deep[-1, -1] == 255 and (np.diff(deep.ravel()) >= 0).all()
    assert np.array_equal(deep, np.rint(GRADIENT / 257.0))  # 65535 / 255 = 257


def test_16_bit_grey_in_either_byte_order_keeps_its_values(tmp_path) -> None:
    levels = np.array([0, 257, 32768, 65535] * 4, dtype=np.uint16).reshape(4, 4)
    big = Image.frombytes("I;16B", (4, 4), levels.astype(">u2").tobytes())
    little = Image.frombytes("I;16L", (4, 4), levels.astype("<u2").tobytes())
    big.save(tmp_path / "big.tif")
    little.save(tmp_path / "little.tif")
    for path, mode in ((tmp_path / "big.tif", "I;16B"), (tmp_path / "little.tif", "I;16")):
        assert grey(decode(path, mode))[0].tolist() == [0, 1, 128, 255], mode  # 32768 / 257 = 127.5 -> 128


def test_a_12_bit_tiff_is_scaled_by_the_depth_it_declares(tmp_path) -> None:
    a = np.array([0, 16, 2048, 4095] * 4, dtype=np.uint16).reshape(4, 4)
    assert grey(decode(tiff12(tmp_path / "camera.tif", a), "I;16"))[0].tolist() == [0, 1, 128, 255]


def test_a_32_bit_integer_image_is_read_as_16_bit_data_and_refused_outside_it(tmp_path) -> None:
    a = np.array([0, 257, 32768, 65535] * 4, dtype=np.int32).reshape(4, 4)
    Image.fromarray(a).save(tmp_path / "int.tif")
    assert grey(decode(tmp_path / "int.tif", "I"))[0].tolist() == [0, 1, 128, 255]
    for bad in (70000, -1):
        a[2, 1] = bad
        Image.fromarray(a).save(tmp_path / "int.tif")
        with pytest.raises(DataError) as info:
            decode_image(tmp_path / "int.tif", 4)
        message = str(info.value)
        assert f"{tmp_path / 'int.tif'} is an integer image (Pillow mode I) with values" in message
        assert "outside 0..65535" in message and "convert it to an 8-bit RGB PNG" in message and "\n" not in message


def test_a_float_image_in_0_1_is_scaled_by_255_and_refused_outside_it(tmp_path) -> None:
    a = np.array([0.0, 0.25, 0.5, 1.0] * 4, dtype=np.float32).reshape(4, 4)
    Image.fromarray(a).save(tmp_path / "float.tif")
    assert grey(decode(tmp_path / "float.tif", "F"))[0].tolist() == [0, 64, 128, 255]  # 63.75 -> 64, 127.5 -> 128
    for bad in (1.5, -0.1, np.nan):
        a[3, 3] = bad
        Image.fromarray(a).save(tmp_path / "float.tif")
        with pytest.raises(DataError, match=r"float.tif is a floating-point image \(Pillow mode F\) with values .*"
                                            r"outside \[0, 1\], so it has no known scale to 8 bits: rescale it"):
            decode_image(tmp_path / "float.tif", 4)


def test_16_bit_colour_pngs_keep_the_high_byte_of_each_sample(tmp_path) -> None:
    samples = np.array([0, 255, 256, 32768, 65279, 65535], dtype=np.uint16)  # high bytes 0, 0, 1, 128, 254, 255
    expected = (samples >> 8).tolist()
    for c, mode in ((2, "RGBA"), (3, "RGB"), (4, "RGBA")):  # Pillow opens 16-bit grey + alpha as RGBA
        a = np.zeros((6, 6, c), dtype=np.uint16)
        a[..., 0] = samples[:, None]  # row k: the k-th sample (grey or red); green and blue stay 0, alpha opaque
        a[..., -1] = 65535 if c in (2, 4) else 0
        rgb = decode(png16(tmp_path / f"deep{c}.png", a), mode)
        red = rgb[:, 0, 0].tolist()
        assert red == expected, c  # not clipped to 255, not rounded past the high byte
        assert (rgb[:, 0, 1:] == (rgb[:, 0, :1] if c == 2 else 0)).all()


def test_8_bit_modes_convert_as_pillow_does_with_alpha_dropped(tmp_path) -> None:
    bits = Image.fromarray(np.indices((4, 4)).sum(0) % 2 == 1)  # mode 1 checkerboard
    bits.save(tmp_path / "bits.png")
    assert grey(decode(tmp_path / "bits.png", "1")).tolist() == (np.indices((4, 4)).sum(0) % 2 * 255).tolist()
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30, 200, 100, 50])
    palette.putpixel((0, 0), 2)
    palette.save(tmp_path / "palette.png")
    rgb = decode(tmp_path / "palette.png", "P")
    assert rgb[0, 0].tolist() == [200, 100, 50] and rgb[3, 3].tolist() == [10, 20, 30]
    Image.new("LA", (4, 4), (50, 128)).save(tmp_path / "la.png")
    assert (grey(decode(tmp_path / "la.png", "LA")) == 50).all()
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.tif")  # no ink but magenta and yellow: red
    assert (decode(tmp_path / "cmyk.tif", "CMYK") == [255, 0, 0]).all()
    Image.new("YCbCr", (4, 4), (90, 128, 128)).save(tmp_path / "ycbcr.tif")  # neutral chroma: grey of luma 90
    assert (grey(decode(tmp_path / "ycbcr.tif", "YCbCr")) == 90).all()


def test_premultiplied_grey_and_alpha_is_unpremultiplied(tmp_path) -> None:
    Image.new("LA", (4, 4), (50, 128)).save(tmp_path / "la.tif")
    tiff = (tmp_path / "la.tif").read_bytes()
    extra_samples = struct.pack("<HHIH", 338, 3, 1, 2)  # ExtraSamples = 2, unassociated alpha, as Pillow writes it
    assert tiff.count(extra_samples) == 1
    (tmp_path / "la.tif").write_bytes(tiff.replace(extra_samples, struct.pack("<HHIH", 338, 3, 1, 1)))  # 1: associated
    unassociated = 50 * 255 / 128  # 99.6 (Pillow rounds it down); dropping the alpha as stored would give 50
    assert (abs(grey(decode(tmp_path / "la.tif", "La")) - unassociated) < 1).all()


def test_a_mode_maelab_cannot_convert_names_the_file_the_mode_and_the_fix(tmp_path, monkeypatch) -> None:
    Image.new("CMYK", (4, 4)).save(tmp_path / "print.tif")
    monkeypatch.setattr(folder, "RGB_MODES", tuple(m for m in folder.RGB_MODES if m != "CMYK"))
    with pytest.raises(DataError) as info:
        decode_image(tmp_path / "print.tif", 4)
    assert str(info.value) == (f"{tmp_path / 'print.tif'} has the Pillow mode CMYK, which maelab cannot make "
                               "8-bit RGB: convert it to an 8-bit RGB PNG")


def test_a_relative_folder_that_does_not_exist_says_where_it_was_read_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=f"read from the folder maelab runs in, {tmp_path}: run from the folder"):
        load_dataset(DataConfig(name="folder", root="../elsewhere", image_size=8), seed=0)
    with pytest.raises(DataError) as absolute:
        load_dataset(DataConfig(name="folder", root=str(tmp_path / "gone"), image_size=8), seed=0)
    assert "read from the folder maelab runs in" not in str(absolute.value)


def test_class_folders_at_the_top_are_named_as_classes_to_split(tmp_path):
    for cls in ("airplane", "cat", "horse", "truck"):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / cls / "a.png")
    with pytest.raises(DataError, match=r"its 4 folders airplane/, cat/, horse/, \.\.\. look like classes .*"
                                        r"move them into train/<class>/ and test/<class>/"):
        require_labels(DataConfig(name="folder", root=str(tmp_path)), "probe")
    Image.new("RGB", (8, 8)).save(tmp_path / "loose.png")  # loose images at the top: an unlabeled tree, no hint
    with pytest.raises(DataError) as plain:
        require_labels(DataConfig(name="folder", root=str(tmp_path)), "probe")
    assert "look like classes" not in str(plain.value)
