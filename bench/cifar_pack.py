"""CIFAR-10's python batches packed losslessly into parts small enough for a device call, and unpacked there.

    python bench/cifar_pack.py pack SRC DEST [--parts 2]   every file of SRC (cifar-10-batches-py) into DEST/1..N
    python bench/cifar_pack.py unpack PART OUT             decode one part's files into OUT, each checked by md5

A batch file is a pickle whose bulk is the ``[N, 3072]`` uint8 pixel array, stored as one raw string. Its pixels
go through ``cifar_codec`` (a 2-D predictor and rANS: about half their size); the pickle's other bytes (labels,
file names, the opcodes around the array) are kept verbatim, lzma-compressed, and put back around the decoded
pixels. Any other file (batches.meta, or a pickle without such a string) is lzma-compressed whole. Each packed file
(``NAME.cpk``) carries the original's size and md5; ``unpack`` decodes every file of the part, checks each md5, and
only then writes the files, each to a temporary name renamed into place: a corrupt part writes nothing and exits 2.
Needs numpy and the standard library only (the device machine's bare image).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import os
import pickletools
import struct
import sys
import time
from pathlib import Path

import numpy as np
from cifar_codec import decode_pixels, encode_pixels

ROW = 3072  # bytes per image in a batch's pixel array
ORDER = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
_MAGIC = b"CIFPACK1"
_LEN = struct.Struct("<I")
_RAW_STRINGS = {"BINSTRING", "BINBYTES", "BINBYTES8"}
EXIT_CORRUPT = 2


class PackError(Exception):
    """A part that cannot be unpacked to the files it claims (corrupt, incomplete, or not a part)."""


def find_pixels(data: bytes) -> tuple[int, int] | None:
    """(offset, length) of the largest raw string in the pickle ``data`` that is whole images, or None.

    Reads the opcodes only (``pickletools.genops``: nothing is imported or run).
    """
    best, prev = None, None
    try:
        for op, arg, pos in pickletools.genops(data):
            if prev is not None and len(prev[1]) >= (best[1] if best else ROW):
                best = (pos - len(prev[1]), len(prev[1]))
            prev = (op, arg) if op.name in _RAW_STRINGS and len(arg) % ROW == 0 else None
    except Exception:  # not a pickle (or a truncated one): no pixels to model
        return None
    return best


def pack_file(data: bytes, name: str) -> bytes:
    """One original file -> its packed bytes: magic, header length, JSON header, lzma'd rest, pixel blob."""
    where = find_pixels(data)
    offset, length = where if where else (len(data), 0)
    rest = lzma.compress(data[:offset] + data[offset + length :], preset=9 | lzma.PRESET_EXTREME)
    blob = encode_pixels(np.frombuffer(data, np.uint8, length, offset).reshape(-1, ROW)) if length else b""
    head = {"name": name, "size": len(data), "md5": hashlib.md5(data).hexdigest(), "offset": offset,
            "rest": len(rest), "pixels": len(blob), "method": "med-rans+lzma" if length else "lzma"}
    raw = json.dumps(head, sort_keys=True).encode()
    return _MAGIC + _LEN.pack(len(raw)) + raw + rest + blob


def unpack_file(packed: bytes, what: str = "packed file") -> tuple[dict, bytes]:
    """Packed bytes -> (header, the original file's bytes). Raises PackError, naming ``what``, unless its size and
    md5 match the header's."""
    try:
        if packed[: len(_MAGIC)] != _MAGIC:
            raise ValueError("not a packed CIFAR-10 file")
        (n,) = _LEN.unpack_from(packed, len(_MAGIC))
        at = len(_MAGIC) + _LEN.size
        head = json.loads(packed[at : at + n])
        at += n
        rest = lzma.decompress(packed[at : at + head["rest"]])
        blob = packed[at + head["rest"] : at + head["rest"] + head["pixels"]]
        pixels = decode_pixels(blob).tobytes() if head["pixels"] else b""
        data = rest[: head["offset"]] + pixels + rest[head["offset"] :]
    except Exception as err:  # any damage: a bad header, lzma's check, a malformed blob
        raise PackError(f"{what}: cannot decode: {type(err).__name__}: {err}") from err
    md5 = hashlib.md5(data).hexdigest()
    if len(data) != head["size"] or md5 != head["md5"]:
        raise PackError(f"{what}: decoded {len(data)} bytes with md5 {md5}, the pack says {head['size']} "
                        f"bytes with md5 {head['md5']}")
    return head, data


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``: whole or not at all."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def split(names: list[str], sizes: list[int], parts: int) -> list[list[str]]:
    """Consecutive groups of ``names`` (at most ``parts``) of about equal size: a file goes to the part in which its
    middle falls (six batches and the meta file in two parts: three batches, then three and the meta file)."""
    total, run, groups = sum(sizes), 0, [[] for _ in range(parts)]
    for name, size in zip(names, sizes, strict=True):
        groups[min(parts - 1, (2 * run + size) * parts // max(2 * total, 1))].append(name)
        run += size
    return [g for g in groups if g]


def pack(src: Path, dest: Path, parts: int) -> list[Path]:
    """Pack every file of ``src`` into ``dest/1`` .. ``dest/N`` (each ``NAME.cpk`` plus ``index.json``)."""
    if not src.is_dir():
        raise PackError(f"no folder {src}")
    present = sorted(p.name for p in src.iterdir() if p.is_file())
    names = [n for n in ORDER if n in present] + [n for n in present if n not in ORDER]
    if not names:
        raise PackError(f"no files in {src}")
    folders = []
    for k, group in enumerate(split(names, [(src / n).stat().st_size for n in names], parts), start=1):
        folder = dest / str(k)
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.cpk"):
            old.unlink()
        index = {}
        for name in group:
            t0 = time.perf_counter()
            data = (src / name).read_bytes()
            packed = pack_file(data, name)
            t1 = time.perf_counter()
            unpack_file(packed, name)  # the round trip, checked before anything is written
            write_atomic(folder / f"{name}.cpk", packed)
            index[name] = hashlib.md5(data).hexdigest()
            print(f"{folder.name}/{name}: {len(data)} -> {len(packed)} bytes ({len(packed) / len(data):.4f}), "
                  f"pack {t1 - t0:.1f} s, check {time.perf_counter() - t1:.1f} s", flush=True)
        write_atomic(folder / "index.json", json.dumps({"part": k, "files": index}, indent=1).encode())
        folders.append(folder)
    return folders


def unpack(part: Path, out: Path) -> list[str]:
    """Decode every file that ``part/index.json`` names into ``out``; nothing is written unless all check out."""
    try:
        index = json.loads((part / "index.json").read_text())["files"]
    except Exception as err:
        raise PackError(f"{part}/index.json: {type(err).__name__}: {err}") from err
    decoded = {}
    for name, md5 in index.items():
        t0 = time.perf_counter()
        path = part / f"{name}.cpk"
        if not path.is_file():
            raise PackError(f"{path} is missing")
        head, data = unpack_file(path.read_bytes(), str(path))
        if head["name"] != name or head["md5"] != md5:
            raise PackError(f"{path} holds {head['name']} (md5 {head['md5']}), the index expects {name} (md5 {md5})")
        decoded[name] = data
        print(f"{name}: {len(data)} bytes, md5 {md5} ok, {time.perf_counter() - t0:.1f} s", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in decoded.items():
        write_atomic(out / name, data)
    return list(decoded)


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module's docstring). Returns 0, or 2 when a part is corrupt or incomplete."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="pack SRC's files into DEST/1..N")
    p.add_argument("src", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--parts", type=int, default=2)
    u = sub.add_parser("unpack", help="decode PART's files into OUT, checking each md5")
    u.add_argument("part", type=Path)
    u.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        if args.cmd == "pack":
            for folder in pack(args.src, args.dest, args.parts):
                size = sum(f.stat().st_size for f in folder.iterdir())
                print(f"{folder}: {size} bytes ({size / 2**20:.1f} MiB)")
        else:
            unpack(args.part, args.out)
    except PackError as err:
        tail = "nothing written: pack the part again (bash bench/gpu_stage_data.sh)" if args.cmd == "unpack" else ""
        print(f"cifar_pack {args.cmd}: {err}; {tail}".rstrip("; "), file=sys.stderr)
        return EXIT_CORRUPT
    print(f"cifar_pack {args.cmd}: {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
