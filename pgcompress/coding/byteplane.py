"""``planes+brotli`` / ``planes+lzma``: byte-plane split, then a generic compressor.

For float streams (scales, passthrough tensors) the high bytes (sign, exponent) are nearly
constant while the low mantissa bytes are noise; storing plane 0 of every element, then plane
1, ... puts alike bytes together, which brotli/lzma model far better than interleaved bytes.
Blob: the compressor's output over the concatenated planes ([itemsize, count] uint8).
"""

from __future__ import annotations

import lzma

import numpy as np

from pgcompress.coding import bytes_dec
from pgcompress.coding.base import StreamInfo
from pgcompress.coding.generic import ByteCodec
from pgcompress.registry import register_codec


def to_planes(arr: np.ndarray, info: StreamInfo) -> bytes:
    dt = np.dtype(info.dtype).newbyteorder("<")
    b = np.ascontiguousarray(arr.reshape(-1), dtype=dt).view(np.uint8).reshape(-1, dt.itemsize)
    return np.ascontiguousarray(b.T).tobytes()


class PlanesBrotli(ByteCodec):
    name = "planes+brotli"
    decode_fn = staticmethod(bytes_dec.planes_brotli_decode)

    def accepts(self, info: StreamInfo) -> bool:
        return np.dtype(info.dtype).itemsize > 1

    def encode(self, arr: np.ndarray, info: StreamInfo) -> bytes:
        import brotli

        return brotli.compress(to_planes(arr, info), quality=11, lgwin=24)


class PlanesLzma(PlanesBrotli):
    name = "planes+lzma"
    decode_fn = staticmethod(bytes_dec.planes_lzma_decode)

    def encode(self, arr: np.ndarray, info: StreamInfo) -> bytes:
        return lzma.compress(to_planes(arr, info), format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)


register_codec(PlanesBrotli())
register_codec(PlanesLzma())
