"""Checks a method's dequantize runs on the streams it is handed (they come from a file)."""

from __future__ import annotations

import numpy as np

from pgcompress.errors import FormatError
from pgcompress.quant.base import Encoded


def expect_stream(enc: Encoded, role: str, count: int, dtype) -> np.ndarray:
    """The stream ``role`` of ``enc``, checked to hold ``count`` elements of ``dtype``."""
    arr = enc.streams.get(role)
    if arr is None:
        raise FormatError(f"method {enc.method}: stream {role!r} is missing")
    if arr.dtype != np.dtype(dtype) or arr.size != count:
        raise FormatError(
            f"method {enc.method}: stream {role!r} holds {arr.size} x {arr.dtype}, "
            f"expected {count} x {np.dtype(dtype)}"
        )
    return arr
