"""``rans``: order-0 interleaved rANS for integer symbol streams (one table per stream).

Blob: uvarint sb, uvarint A (= hi - lo + 1), A uvarint frequencies (sum 2^sb), then the rANS
body (rans_core; one phase, no tail). Symbols are stored as value - lo.
"""

from __future__ import annotations

import numpy as np

from pgcompress.coding.base import Codec, StreamInfo
from pgcompress.coding.rans_core import (check_end, lanes_decode, lanes_encode, lanes_for, quantize_freqs, read_body,
                                         read_uvarint, read_uvarints, slot_tables, symbol_freqs, symbol_stream_ok,
                                         write_body, write_uvarint)
from pgcompress.errors import CodecError
from pgcompress.registry import register_codec

SCALE_BITS = 15
# Each lane costs ~3 bytes of final state; each decode step ~10 us of numpy overhead. One lane
# per 2K symbols keeps the state cost near 0.2% of a 6-bit stream, and a stream decodes in
# ~2K steps (~20 ms) whatever its size (measured: bench/results/coders.md).
SYMBOLS_PER_LANE = 2048


def rans0_decode(blob, dtype, count, lo, hi):
    """blob -> [count] array of ``dtype`` (values in [lo, hi])."""
    if lo is None or hi is None:
        if count:
            raise CodecError(f"rans cannot hold a {dtype} stream without a value range")
        lo = hi = 0
    buf = memoryview(blob).cast("B")
    sb, pos = read_uvarint(buf, 0)
    a, pos = read_uvarint(buf, pos)
    if not 1 <= sb <= 16 or a != hi - lo + 1:
        raise CodecError(f"corrupt stream (scale bits {sb}, alphabet {a}, expected {hi - lo + 1})")
    freq, pos = read_uvarints(buf, pos, a)
    x, words = read_body(buf, pos, count)
    if count == 0:
        return np.zeros(0, dtype=dtype)
    syms, pos = lanes_decode(x, words, 0, count, sb, slot_tables(freq.reshape(1, a), sb), None, 0)
    check_end(x, words, pos)
    return (syms + lo).astype(dtype)


def rans0_encode(idx: np.ndarray, a: int, lanes: int) -> bytes:
    """idx: [n] values in [0, a) -> a blob rans0_decode reads (with lo = 0, hi = a - 1)."""
    counts = np.bincount(idx, minlength=a) if idx.size else np.ones(a, dtype=np.int64)
    freq = quantize_freqs(counts, SCALE_BITS)
    out = bytearray()
    write_uvarint(out, SCALE_BITS)
    write_uvarint(out, a)
    for f in freq.tolist():
        write_uvarint(out, f)
    f_sym, c_sym = symbol_freqs(freq.reshape(1, a), None, idx)
    states, words, _ = lanes_encode(f_sym, c_sym, [idx.size], lanes, SCALE_BITS, max_tail=0)
    return bytes(out) + write_body(states, words)


class Rans0Codec(Codec):
    name = "rans"
    decode_fn = staticmethod(rans0_decode)

    def accepts(self, info: StreamInfo) -> bool:
        return symbol_stream_ok(info)

    def encode(self, arr: np.ndarray, info: StreamInfo) -> bytes:
        a = info.hi - info.lo + 1 if info.count else 1
        idx = arr.reshape(-1).astype(np.int64) - (info.lo or 0)
        return rans0_encode(idx, a, lanes_for(idx.size, SYMBOLS_PER_LANE))


register_codec(Rans0Codec())
