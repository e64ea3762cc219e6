"""``rans``: order-0 interleaved rANS for integer symbol streams (one table per stream).

Blob: uvarint sb, uvarint A (= hi - lo + 1), A uvarint frequencies (sum 2^sb), then the rANS
body (lanes, word count, lane states, words; see rans_dec). Symbols are stored as value - lo.
"""

from __future__ import annotations

import numpy as np

from pgcompress.coding.base import Codec, StreamInfo
from pgcompress.coding.rans_dec import MAX_LANES, MAX_STEPS, rans0_decode
from pgcompress.coding.rans_enc import quantize_freqs, rans_body, rans_encode, write_uvarint
from pgcompress.registry import register_codec

SCALE_BITS = 15
MAX_ALPHABET = 1 << 16
# Each lane costs ~3 bytes of final state; each decode step ~10 us of numpy overhead. One lane
# per 2K symbols keeps the state cost near 0.2% of a 6-bit stream, and a stream decodes in
# ~2K steps (~20 ms) whatever its size (measured: bench/results/coders.md).
SYMBOLS_PER_LANE = 2048


def lanes_for(count: int) -> int:
    return int(min(MAX_LANES, max(1, count // SYMBOLS_PER_LANE)))


def symbol_stream_ok(info: StreamInfo) -> bool:
    return (info.lo is not None and info.dtype in ("int8", "int16", "uint8")
            and 0 < info.hi - info.lo + 1 <= MAX_ALPHABET and info.count <= MAX_LANES * MAX_STEPS)


def rans0_encode(idx: np.ndarray, a: int, lanes: int) -> bytes:
    """idx: [n] values in [0, a) -> a blob rans0_decode reads (with lo = 0, hi = a - 1)."""
    counts = np.bincount(idx, minlength=a) if idx.size else np.ones(a, dtype=np.int64)
    freq = quantize_freqs(counts, SCALE_BITS)
    out = bytearray()
    write_uvarint(out, SCALE_BITS)
    write_uvarint(out, a)
    for f in freq.tolist():
        write_uvarint(out, f)
    states, words = rans_encode(idx, freq.reshape(1, a), SCALE_BITS, lanes)
    return bytes(out) + rans_body(states, words)


class Rans0Codec(Codec):
    name = "rans"
    decode_fn = staticmethod(rans0_decode)

    def accepts(self, info: StreamInfo) -> bool:
        return symbol_stream_ok(info)

    def encode(self, arr: np.ndarray, info: StreamInfo) -> bytes:
        a = info.hi - info.lo + 1 if info.count else 1
        idx = arr.reshape(-1).astype(np.int64) - (info.lo or 0)
        return rans0_encode(idx, a, lanes_for(idx.size))


register_codec(Rans0Codec())
