"""Static-table rANS entropy coding, vectorised over lanes with numpy (one lane per image, one stream per lane).

Byte-wise rANS after Duda (2013, "Asymmetric numeral systems", arXiv:1311.2540) in the form of F. Giesen's ryg_rans
(``rans_byte.h``): a 32-bit state kept in ``[L, 256 L)`` with ``L = 2**23``, probabilities quantised to ``M = 2**14``,
at most two bytes moved per symbol. Every lane codes one symbol per step, with its own context; a context selects
one of the frequency tables, which are fitted to the data being packed and stored with it (``quantise``).
The encoder runs the steps last to first and writes each lane's bytes backwards; the decoder reads them forwards.
Needs numpy only.
"""

from __future__ import annotations

import numpy as np

SCALE = 14
M = 1 << SCALE
L = 1 << 23
_X_MAX_UNIT = (L >> SCALE) << 8  # encoder renormalises while state >= _X_MAX_UNIT * freq


def quantise(counts: np.ndarray) -> np.ndarray:
    """Symbol counts ``[contexts, 256]`` (int) -> frequencies ``[contexts, 256]`` uint16, each row summing to ``M``.

    A symbol that occurs keeps a frequency >= 1, so every symbol of the data stays codable; an unused context
    gets a flat row.
    """
    counts = np.asarray(counts, dtype=np.int64)
    freq = np.full(counts.shape, M // 256, dtype=np.int64)
    for row, c in enumerate(counts):
        total = int(c.sum())
        if total == 0:
            continue
        f = np.where(c > 0, np.maximum(1, (c * M) // total), 0)
        while f.sum() != M:  # give or take the rounding from the largest entries that can spare it
            excess = int(f.sum()) - M
            order = np.argsort(-f, kind="stable")
            k = order[: min(abs(excess), int((f > 1).sum()) or 1)]
            f[k] -= np.sign(excess)
        freq[row] = f
    return freq.astype(np.uint16)


def _cum(freq: np.ndarray) -> np.ndarray:
    """Exclusive cumulative frequencies ``[contexts, 256]`` uint64 of ``freq``."""
    f = freq.astype(np.uint64)
    return np.cumsum(f, axis=1) - f


def encode(symbols: np.ndarray, contexts: np.ndarray, freq: np.ndarray) -> tuple[np.ndarray, bytes]:
    """Code ``symbols`` ``[steps, lanes]`` uint8 under ``contexts`` ``[steps, lanes]`` (int, rows of ``freq``).

    Returns each lane's stream length ``[lanes]`` uint32 and the lanes' streams concatenated in lane order.
    """
    steps, lanes = symbols.shape
    f_all, c_all = freq.astype(np.uint64).ravel(), _cum(freq).ravel()
    x = np.full(lanes, L, dtype=np.uint64)
    buf = np.zeros((lanes, 2 * steps + 4), dtype=np.uint8)
    ptr = np.zeros(lanes, dtype=np.int64)
    for t in range(steps - 1, -1, -1):
        k = contexts[t].astype(np.int64) * 256 + symbols[t]
        f = f_all[k]
        x_max = f * np.uint64(_X_MAX_UNIT)
        for _ in range(2):
            (idx,) = np.nonzero(x >= x_max)
            if idx.size == 0:
                break
            buf[idx, ptr[idx]] = (x[idx] & np.uint64(255)).astype(np.uint8)
            ptr[idx] += 1
            x[idx] >>= np.uint64(8)
        x = ((x // f) << np.uint64(SCALE)) + x % f + c_all[k]
    for _ in range(4):  # the final state, low byte first: read back high byte first
        buf[np.arange(lanes), ptr] = (x & np.uint64(255)).astype(np.uint8)
        ptr += 1
        x >>= np.uint64(8)
    streams = b"".join(buf[i, : ptr[i]][::-1].tobytes() for i in range(lanes))
    return ptr.astype(np.uint32), streams


class Decoder:
    """Decodes the streams of ``encode`` one step (one symbol per lane) at a time, in the encoder's step order."""

    def __init__(self, freq: np.ndarray, lengths: np.ndarray, streams: bytes) -> None:
        """``freq`` ``[contexts, 256]`` uint16 as given to ``encode``; ``lengths`` ``[lanes]``; ``streams`` bytes."""
        lengths = np.asarray(lengths, dtype=np.int64)
        if int(lengths.sum()) != len(streams) or (lengths < 4).any():
            raise ValueError("rANS stream lengths do not add up to the stored streams")
        self.f_all, self.c_all = freq.astype(np.uint64).ravel(), _cum(freq).ravel()
        rows = np.repeat(np.arange(freq.shape[0] * 256) % 256, freq.astype(np.int64).ravel())
        if rows.size != freq.shape[0] * M:
            raise ValueError("a frequency table does not sum to 2**14")
        self.lut = rows.astype(np.uint8)  # [contexts * M]: slot -> symbol
        width = int(lengths.max()) + 2
        self.buf = np.zeros((lengths.size, width), dtype=np.uint8)
        self.buf[np.arange(width)[None, :] < lengths[:, None]] = np.frombuffer(streams, dtype=np.uint8)
        self.x = np.ascontiguousarray(self.buf[:, :4]).view(">u4")[:, 0].astype(np.uint64)  # the final state
        self.ptr = np.full(lengths.size, 4, dtype=np.int64)
        self.limit = width - 1

    def decode(self, contexts: np.ndarray) -> np.ndarray:
        """One symbol per lane under ``contexts`` ``[lanes]`` (int) -> ``[lanes]`` uint8."""
        ctx = contexts.astype(np.int64)
        slot = self.x & np.uint64(M - 1)
        sym = self.lut[ctx * M + slot.astype(np.int64)]
        k = ctx * 256 + sym.astype(np.int64)
        self.x = self.f_all[k] * (self.x >> np.uint64(SCALE)) + slot - self.c_all[k]
        for _ in range(2):
            (idx,) = np.nonzero(self.x < np.uint64(L))
            if idx.size == 0:
                break
            p = np.minimum(self.ptr[idx], self.limit)  # a corrupt stream reads zeros, not past the buffer
            self.x[idx] = (self.x[idx] << np.uint64(8)) | self.buf[idx, p].astype(np.uint64)
            self.ptr[idx] += 1
        return sym
