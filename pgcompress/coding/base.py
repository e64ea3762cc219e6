"""The codec interface: a codec turns one typed array (a stream) into bytes and back.

Streams are self-describing: whatever a codec needs to decode (levels, tables, lane counts)
lives inside its bytes. The container stores, per stream, the codec's name and a ``StreamInfo``
(element dtype, count and, for integer symbol streams, the value range), and hands that info to
``decode``, which must validate everything it reads before allocating.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Little-endian numpy dtypes a stream may hold. bf16 data travels as its uint16 bit pattern.
STREAM_DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
                 "float16", "float32", "float64", "bool")

# Streams larger than this are refused before anything is allocated (a corrupt header cannot
# make the decoder reserve terabytes).
MAX_STREAM_BYTES = 1 << 34


@dataclass(frozen=True)
class StreamInfo:
    """What the container knows about a stream without decoding it.

    dtype: one of STREAM_DTYPES; count: number of elements;
    lo/hi: min/max value for integer symbol streams (signed ints up to 16 bits), else None.
    shape: (rows, cols) when the stream is a matrix, known at encode time only (the header does
      not store it; a codec that models rows and columns, like ``rans-ctx2``, keeps it in its blob).
    """

    dtype: str
    count: int
    lo: int | None = None
    hi: int | None = None
    shape: tuple[int, int] | None = None

    @property
    def raw_nbytes(self) -> int:
        return self.count * np.dtype(self.dtype).itemsize

    @property
    def is_symbols(self) -> bool:
        return self.lo is not None


def stream_info_for(arr: np.ndarray) -> StreamInfo:
    """StreamInfo of an array about to be stored (range only for signed ints of <= 16 bits;
    shape only for 2-D arrays)."""
    dtype = arr.dtype.newbyteorder("=").name if arr.dtype.byteorder not in "=|<" else arr.dtype.name
    if dtype not in STREAM_DTYPES:
        raise TypeError(f"stream dtype {arr.dtype} is not storable")
    lo = hi = None
    if arr.dtype.kind == "i" and arr.dtype.itemsize <= 2 and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
    shape = (int(arr.shape[0]), int(arr.shape[1])) if arr.ndim == 2 else None
    return StreamInfo(dtype=dtype, count=int(arr.size), lo=lo, hi=hi, shape=shape)


class Codec:
    """Base class.

    decode_fn: the plain function ``(blob, dtype, count, lo, hi) -> [count] array`` that decodes,
      using only numpy, brotli and the stdlib and raising CodecError. ``unpack`` and the generated
      submission decoder both run it (the decoder copies its source), so a codec is submittable
      exactly when it has one. None: the codec overrides ``decode`` instead (e.g. zstd).
    """

    name: str = ""
    decode_fn = None
    # A byte compressor (zlib, brotli, ...) rather than a coder of integer symbols: the automatic
    # choice does not try it on large symbol streams (choose.py)
    bytes_only: bool = False

    @property
    def submittable(self) -> bool:
        return type(self).decode_fn is not None

    def accepts(self, info: StreamInfo) -> bool:
        """Whether this codec can encode a stream of this kind (auto choice skips the others)."""
        return True

    def encode(self, arr: np.ndarray, info: StreamInfo) -> bytes:
        raise NotImplementedError

    def decode(self, blob: bytes, info: StreamInfo) -> np.ndarray:
        """Return a flat array of ``info.dtype`` with ``info.count`` elements, or raise CodecError."""
        if type(self).decode_fn is None:
            raise NotImplementedError
        return type(self).decode_fn(blob, info.dtype, info.count, info.lo, info.hi)
