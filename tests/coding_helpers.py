"""Shared helpers for the codec tests: stream infos and an independent entropy computation."""

from __future__ import annotations

import dataclasses

import numpy as np

from pgcompress.coding.base import StreamInfo, stream_info_for


def matrix_info(q: np.ndarray) -> StreamInfo:
    """StreamInfo of a 2-D integer matrix, carrying its shape (what ``rans-ctx`` needs)."""
    base = stream_info_for(q.reshape(-1))
    if "shape" in {f.name for f in dataclasses.fields(StreamInfo)}:
        return dataclasses.replace(base, shape=tuple(q.shape))
    return _ShapedInfo(base.dtype, base.count, base.lo, base.hi, tuple(q.shape))


@dataclasses.dataclass(frozen=True)
class _ShapedInfo(StreamInfo):
    # stand-in until StreamInfo itself records the shape of matrix streams
    shape: tuple | None = None


def order0_entropy_bytes(values: np.ndarray) -> float:
    """Empirical order-0 entropy of ``values`` in bytes, computed with Python floats."""
    _, counts = np.unique(values, return_counts=True)
    n = float(values.size)
    return sum(-c * np.log2(c / n) for c in counts.tolist()) / 8.0
