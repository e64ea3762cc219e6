"""Checks a method's dequantize runs on the streams it is handed (they come from a file)."""

from __future__ import annotations

import numpy as np

from pgcompress.errors import FormatError
from pgcompress.quant.base import Encoded


def expect_stream(enc: Encoded, role: str, count: int, dtype) -> np.ndarray:
    """The stream ``role`` of ``enc``, checked to hold ``count`` elements of ``dtype``."""
    try:
        return check_stream(enc.streams, role, count, np.dtype(dtype).name)
    except FormatError as exc:
        raise FormatError(f"method {enc.method}: {exc}") from None


def check_stream(streams, role, count, dtype):
    """streams[role], checked to hold ``count`` elements of the numpy dtype named ``dtype``. A plain
    function: the methods' decode functions call it, so the submission decoder checks the same."""
    arr = streams.get(role)
    if arr is None:
        raise FormatError(f"stream {role!r} is missing")
    if arr.dtype.name != dtype or arr.size != count:
        raise FormatError(f"stream {role!r} holds {arr.size} x {arr.dtype.name}, expected {count} x {dtype}")
    return arr
