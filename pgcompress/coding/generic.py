"""Generic byte codecs over a stream's raw little-endian bytes: raw, zlib, lzma, brotli, zstd.

Decoding lives in bytes_dec (plain functions the submission decoder is built from); zstd is the
exception: not submittable (zstandard is not in the challenge's requirements).
"""

from __future__ import annotations

import lzma
import zlib

import numpy as np

from pgcompress.coding import bytes_dec
from pgcompress.coding.base import Codec, StreamInfo
from pgcompress.errors import CodecError
from pgcompress.registry import register_codec


def le_bytes(arr: np.ndarray, info: StreamInfo) -> bytes:
    return np.ascontiguousarray(arr, dtype=np.dtype(info.dtype).newbyteorder("<")).tobytes()


class ByteCodec(Codec):
    """A codec whose decode is ``decode_fn(blob, dtype, count, lo, hi)`` from a *_dec module."""

    decode_fn = staticmethod(bytes_dec.raw_decode)
    bytes_only = True


class RawCodec(ByteCodec):
    name = "raw"

    def encode(self, arr, info):
        return le_bytes(arr, info)


class ZlibCodec(ByteCodec):
    name = "zlib"
    decode_fn = staticmethod(bytes_dec.zlib_decode)

    def encode(self, arr, info):
        return zlib.compress(le_bytes(arr, info), 9)


class LzmaCodec(ByteCodec):
    name = "lzma"
    decode_fn = staticmethod(bytes_dec.lzma_decode)

    def encode(self, arr, info):
        return lzma.compress(le_bytes(arr, info), format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)


class BrotliCodec(ByteCodec):
    name = "brotli"
    decode_fn = staticmethod(bytes_dec.brotli_decode)

    def encode(self, arr, info):
        import brotli

        return brotli.compress(le_bytes(arr, info), quality=11, lgwin=24)


class ZstdCodec(ByteCodec):
    """zstd-22 with long-distance matching. Not submittable: zstandard is not in the challenge's requirements."""

    name = "zstd"
    decode_fn = None

    def encode(self, arr, info):
        import zstandard

        params = zstandard.ZstdCompressionParameters.from_level(22, enable_ldm=True)
        return zstandard.ZstdCompressor(compression_params=params).compress(le_bytes(arr, info))

    def decode(self, blob, info):
        import zstandard

        try:
            # max_output_size bounds what a corrupt frame can make it allocate
            raw = zstandard.ZstdDecompressor().decompress(blob, max_output_size=max(1, info.raw_nbytes))
        except zstandard.ZstdError as exc:
            raise CodecError(f"zstd: corrupt stream ({exc})") from None
        return bytes_dec.from_le_bytes(raw, info.dtype, info.count)


for _codec in (RawCodec(), ZlibCodec(), LzmaCodec(), BrotliCodec(), ZstdCodec()):
    register_codec(_codec)
