"""``bitpack``: integer symbols stored in ceil(log2(hi - lo + 1)) bits each, after subtracting lo.

No modelling at all: the baseline an entropy coder must beat, and the cheapest decoder.
Blob: one byte b (bits per symbol, 0..16), then ceil(count * b / 8) bytes, little-endian bit order.
"""

from __future__ import annotations

import numpy as np

from pgcompress.coding.base import Codec, StreamInfo
from pgcompress.errors import CodecError
from pgcompress.registry import register_codec

_CHUNK = 1 << 20  # symbols per pass, so the [n, b] bit matrix stays small
# A 0-bit stream (a single value) is one byte whatever its count: the count is capped so that a
# 1-byte blob cannot ask for gigabytes. Longer constant streams go to another codec.
MAX_CONST_COUNT = 1 << 22


def bits_for(info: StreamInfo) -> int:
    return int(info.hi - info.lo).bit_length()


def bitpack_decode(blob, dtype, count, lo, hi):
    """blob -> [count] array of ``dtype``."""
    if lo is None or hi is None or not 0 <= hi - lo < 1 << 16:
        raise CodecError(f"bitpack needs an integer stream with a value range of at most 2^16, not {lo}..{hi}")
    buf = memoryview(blob).cast("B")
    if len(buf) < 1:
        raise CodecError("bitpack: empty stream")
    b = buf[0]
    if b != int(hi - lo).bit_length() or len(buf) - 1 != (count * b + 7) // 8 or (b == 0 and count > MAX_CONST_COUNT):
        raise CodecError(f"bitpack: corrupt stream ({b} bits, {len(buf) - 1} bytes for {count} symbols)")
    out = np.full(count, lo, dtype=dtype)
    if b == 0:
        return out
    weights = np.int64(1) << np.arange(b, dtype=np.int64)
    packed = np.frombuffer(buf, dtype=np.uint8, offset=1)
    for start in range(0, count, _CHUNK):
        n = min(_CHUNK, count - start)
        # _CHUNK * b is a multiple of 8, so every chunk starts on a byte boundary
        first = start * b // 8
        bits = np.unpackbits(packed[first:first + (n * b + 7) // 8], count=n * b, bitorder="little")
        v = bits.reshape(n, b).astype(np.int64) @ weights + lo
        if v.max() > hi:
            raise CodecError("bitpack: corrupt stream (value above the header's range)")
        out[start:start + n] = v
    return out


class BitpackCodec(Codec):
    name = "bitpack"
    decode_fn = staticmethod(bitpack_decode)

    def accepts(self, info: StreamInfo) -> bool:
        return (info.lo is not None and info.hi - info.lo < 1 << 16
                and (info.hi > info.lo or info.count <= MAX_CONST_COUNT))

    def encode(self, arr: np.ndarray, info: StreamInfo) -> bytes:
        if not self.accepts(info):
            raise CodecError("bitpack needs an integer stream with a value range of at most 2^16")
        b = bits_for(info)
        v = arr.reshape(-1).astype(np.int64) - info.lo
        shifts = np.arange(b, dtype=np.int64)
        parts = [bytes([b])]
        for start in range(0, v.size, _CHUNK):
            bits = ((v[start:start + _CHUNK, None] >> shifts) & 1).astype(np.uint8)
            parts.append(np.packbits(bits.reshape(-1), bitorder="little").tobytes())
        return b"".join(parts)


register_codec(BitpackCodec())
