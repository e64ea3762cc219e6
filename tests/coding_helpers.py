"""Shared helpers for the codec tests: stream infos and an independent entropy computation."""

from __future__ import annotations

import dataclasses

import numpy as np

from pgcompress.coding.base import StreamInfo, stream_info_for


def matrix_info(q: np.ndarray) -> StreamInfo:
    """StreamInfo of a 2-D integer matrix, carrying its shape (what ``rans-ctx2`` needs)."""
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


def leb128(*values: int) -> bytearray:
    """Unsigned LEB128 varints, one after another (how the rans-family headers store integers),
    written here with plain shifts rather than with the library's writer."""
    out = bytearray()
    for v in values:
        while True:
            byte, v = v & 0x7F, v >> 7
            out.append(byte | (0x80 if v else 0))
            if not v:
                break
    return out


def assert_corruption_detected(codec, q: np.ndarray, min_detected: int = 70) -> None:
    """Truncations and a trailing extra word raise CodecError; of 100 single-bit flips at least
    ``min_detected`` raise it, and the rest still decode to the right size and dtype."""
    from pgcompress.errors import CodecError

    info = matrix_info(q)
    blob = codec.encode(q.reshape(-1), info)
    for cut in (0, 3, 12, len(blob) // 2, len(blob) - 1):
        try:
            codec.decode(blob[:cut], info)
        except CodecError:
            continue
        raise AssertionError(f"a blob cut to {cut} of {len(blob)} bytes decoded")
    try:
        codec.decode(blob + b"\0\0", info)
    except CodecError:
        pass
    else:
        raise AssertionError("a blob with two extra bytes decoded")
    rng = np.random.default_rng(8)
    detected = 0
    for _ in range(100):
        bad = bytearray(blob)
        bad[int(rng.integers(0, len(bad)))] ^= 1 << int(rng.integers(0, 8))
        try:
            out = codec.decode(bytes(bad), info)
        except CodecError:
            detected += 1
            continue
        assert out.size == q.size and out.dtype == q.dtype
    assert detected >= min_detected, detected


def assert_refused_before_allocating(codec, blob: bytes, info: StreamInfo, limit: int = 1 << 20) -> None:
    """``blob`` raises CodecError having allocated under ``limit`` bytes at its peak (tracemalloc)."""
    import tracemalloc

    from pgcompress.errors import CodecError

    tracemalloc.start()
    try:
        codec.decode(blob, info)
    except CodecError:
        pass
    else:
        raise AssertionError("a lying blob decoded")
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < limit, peak


def assert_roundtrip(codec, q: np.ndarray) -> bytes:
    """Encode matrix q, decode it back bit for bit (dtype and flat shape), encode again to the same
    bytes (determinism); -> the blob."""
    info = matrix_info(q)
    blob = codec.encode(q.reshape(-1), info)
    out = codec.decode(blob, info)
    assert out.dtype == q.dtype and out.shape == (q.size,)
    np.testing.assert_array_equal(out, q.reshape(-1))
    assert codec.encode(q.reshape(-1), info) == blob
    return blob
