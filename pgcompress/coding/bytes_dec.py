"""Decode side of the byte codecs (raw, zlib, lzma, brotli, byte planes): plain functions.

Every function has the decoder signature (blob, dtype, count, lo, hi) -> [count] ``dtype``
array, decompresses at most about the stream's raw size (a corrupt stream cannot make it
allocate much more), and the submission decoder is assembled from this source.

brotli is read with the API every brotli since 1.0 has (``Decompressor.process``/``is_finished``;
``output_buffer_limit`` only exists from 1.2): the input goes in BROTLI_FEED-byte pieces and the
output is checked after each, so a stream that expands past its size is refused after at most
one piece's output (measured: <= 16 MiB per input byte, the largest brotli meta-block).
"""

import lzma
import zlib

import numpy as np

from pgcompress.errors import CodecError

BROTLI_FEED = 32
LZMA_MEMLIMIT = 1 << 28  # our streams need a 64 MiB dictionary; a header cannot ask for GBs


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
    d = lzma.LZMADecompressor(memlimit=LZMA_MEMLIMIT)
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
    view = memoryview(blob)
    parts, n = [], 0
    try:
        for start in range(0, len(view), BROTLI_FEED):
            parts.append(d.process(view[start:start + BROTLI_FEED]))
            n += len(parts[-1])
            if n > limit:
                raise CodecError(f"brotli: stream decodes to more than its {limit} bytes")
    except brotli.error as exc:
        raise CodecError(f"brotli: corrupt stream ({exc})") from None
    if not d.is_finished():
        raise CodecError("brotli: stream is truncated")
    return b"".join(parts)


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
