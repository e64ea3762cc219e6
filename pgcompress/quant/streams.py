"""Checks a method's dequantize runs on the streams it is handed (they come from a file)."""

from __future__ import annotations

from pgcompress.errors import FormatError


def check_stream(streams, role, count, dtype):
    """streams[role], checked to hold ``count`` elements of the numpy dtype named ``dtype``. A plain
    function: the methods' decode functions call it, so the submission decoder checks the same."""
    arr = streams.get(role)
    if arr is None:
        raise FormatError(f"stream {role!r} is missing")
    if arr.dtype.name != dtype or arr.size != count:
        raise FormatError(f"stream {role!r} holds {arr.size} x {arr.dtype.name}, expected {count} x {dtype}")
    return arr
