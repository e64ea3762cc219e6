"""Encode side of the interleaved rANS coder (see rans_dec for the layout), vectorised over lanes.

Encoding runs the lanes backwards, one numpy step per group of N symbols, collecting each
step's renormalisation words in lane order; the word stream is then reversed by step so the
decoder reads it forwards. Nothing here is needed to decode, so none of it goes into a submission.
"""

from __future__ import annotations

import numpy as np

from pgcompress.coding.rans_dec import RANS_L, quantize_freqs  # noqa: F401 (re-exported)
from pgcompress.errors import CodecError


def write_uvarint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError("uvarint of a negative number")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def rans_encode(idx: np.ndarray, freq: np.ndarray, sb: int, lanes: int,
                ctx: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """idx: [n] symbol indices; freq: [K, A] tables (rows sum to 2^sb); ctx: [n] row of freq per
    symbol (None: row 0) -> (final lane states [lanes] uint32, words [W] uint16 in decode order)."""
    n = idx.size
    k_, a = freq.shape
    row = np.zeros(n, dtype=np.int64) if ctx is None else ctx.astype(np.int64)
    flat_f = freq.reshape(-1).astype(np.uint64)
    flat_c = (np.cumsum(freq, axis=1) - freq).reshape(-1).astype(np.uint64)
    g = row * a + idx.astype(np.int64)
    f_sym = flat_f[g]
    if n and np.any(f_sym == 0):
        raise CodecError("a symbol has frequency 0 in its table")
    c_sym = flat_c[g]
    x = np.full(lanes, RANS_L, dtype=np.uint64)
    shift = np.uint64(sb)
    x_max_shift = np.uint64(32 - sb)
    chunks = []
    for start in range(((n - 1) // lanes) * lanes if n else -1, -1, -lanes):
        k = min(lanes, n - start)
        f = f_sym[start:start + k]
        xs = x[:k]
        emit = xs >= (f << x_max_shift)
        if emit.any():
            chunks.append((xs[emit] & np.uint64(0xFFFF)).astype(np.uint16))
            xs = np.where(emit, xs >> np.uint64(16), xs)
        x[:k] = ((xs // f) << shift) + (xs % f) + c_sym[start:start + k]
    chunks.reverse()
    words = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint16)
    return x.astype(np.uint32), words


def rans_body(states: np.ndarray, words: np.ndarray) -> bytes:
    """The part rans_dec.rans_read_body parses: lanes, word count, states, words."""
    out = bytearray()
    write_uvarint(out, states.size)
    write_uvarint(out, words.size)
    return bytes(out) + states.astype("<u4").tobytes() + words.astype("<u2").tobytes()
