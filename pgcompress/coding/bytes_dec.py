"""Decode side of the byte codecs (raw, zlib, lzma, brotli, byte planes): plain functions.

Every function has the decoder signature (blob, dtype, count, lo, hi) -> [count] ``dtype``
array, decompresses at most the stream's raw size + 1 bytes (a corrupt stream cannot make it
allocate more), and the submission decoder is assembled from this source.
"""

import lzma
import zlib

import numpy as np

from pgcompress.errors import CodecError


def from_le_bytes(raw, dtype, count):
    dt = np.dtype(dtype).newbyteorder("<")
    if len(raw) != count * dt.itemsize:
        raise CodecError(f"decoded {len(raw)} bytes, expected {count * dt.itemsize}")
    return np.frombuffer(raw, dtype=dt).astype(dtype, copy=True)


def raw_decode(blob, dtype, count, lo, hi):
    return from_le_bytes(bytes(blob), dtype, count)


def zlib_unpack(blob, limit):
    d = zlib.decompressobj()
    try:
        raw = d.decompress(blob, limit + 1)
    except zlib.error as exc:
        raise CodecError(f"zlib: corrupt stream ({exc})") from None
    if not d.eof or d.unused_data:
        raise CodecError("zlib: stream is truncated or longer than its header says")
    return raw


def lzma_unpack(blob, limit):
    d = lzma.LZMADecompressor()
    try:
        raw = d.decompress(blob, limit + 1)
    except lzma.LZMAError as exc:
        raise CodecError(f"lzma: corrupt stream ({exc})") from None
    if not d.eof or d.unused_data:
        raise CodecError("lzma: stream is truncated or longer than its header says")
    return raw


def brotli_unpack(blob, limit):
    import brotli

    d = brotli.Decompressor()
    try:
        raw = d.process(blob, output_buffer_limit=limit + 1)
    except brotli.error as exc:
        raise CodecError(f"brotli: corrupt stream ({exc})") from None
    if not d.is_finished() or len(raw) > limit:
        raise CodecError("brotli: stream is truncated or longer than its header says")
    return raw


def nbytes_of(dtype, count):
    return count * np.dtype(dtype).itemsize


def zlib_decode(blob, dtype, count, lo, hi):
    return from_le_bytes(zlib_unpack(blob, nbytes_of(dtype, count)), dtype, count)


def lzma_decode(blob, dtype, count, lo, hi):
    return from_le_bytes(lzma_unpack(blob, nbytes_of(dtype, count)), dtype, count)


def brotli_decode(blob, dtype, count, lo, hi):
    return from_le_bytes(brotli_unpack(blob, nbytes_of(dtype, count)), dtype, count)


def from_planes(raw, dtype, count):
    """Concatenated byte planes ([itemsize, count] uint8) -> [count] array of ``dtype``."""
    dt = np.dtype(dtype).newbyteorder("<")
    if len(raw) != count * dt.itemsize:
        raise CodecError(f"byte planes: {len(raw)} bytes, expected {count * dt.itemsize}")
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(dt.itemsize, count)
    return np.ascontiguousarray(planes.T).view(dt).reshape(-1).astype(dtype)


def planes_brotli_decode(blob, dtype, count, lo, hi):
    return from_planes(brotli_unpack(blob, nbytes_of(dtype, count)), dtype, count)


def planes_lzma_decode(blob, dtype, count, lo, hi):
    return from_planes(lzma_unpack(blob, nbytes_of(dtype, count)), dtype, count)
