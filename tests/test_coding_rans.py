"""rANS codecs (order-0 ``rans``; the context codec against it): lossless roundtrips, size near
the entropy, clean errors on corrupt streams."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coding_helpers import matrix_info, order0_entropy_bytes
from pgcompress.coding.base import StreamInfo, stream_info_for
from pgcompress.coding.rans_core import read_uvarint, read_uvarints, write_body, write_uvarint
from pgcompress.errors import CodecError
from pgcompress.registry import get_codec

RANS = get_codec("rans")
CTX = get_codec("rans-ctx2")


def roundtrip(codec, arr, info=None):
    info = info or stream_info_for(arr)
    blob = codec.encode(arr, info)
    out = codec.decode(blob, info)
    assert out.dtype == arr.dtype and out.shape == (arr.size,)
    np.testing.assert_array_equal(out, arr.reshape(-1))
    return blob


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-128, 127), min_size=1, max_size=3000))
def test_rans_roundtrip_random_int8(values):
    roundtrip(RANS, np.array(values, dtype=np.int8))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 20000), st.floats(0.01, 60.0), st.integers(0, 2**31 - 1),
       st.sampled_from([np.int8, np.int16]))
def test_rans_roundtrip_skewed(n, sigma, seed, dtype):
    rng = np.random.default_rng(seed)
    info_max = np.iinfo(dtype).max
    arr = np.clip(np.round(rng.laplace(0, sigma, n)), -info_max, info_max).astype(dtype)
    roundtrip(RANS, arr)


def test_rans_single_symbol_and_every_value():
    roundtrip(RANS, np.full(5000, -3, dtype=np.int8))
    roundtrip(RANS, np.array([7], dtype=np.int8))
    every = np.arange(-128, 128, dtype=np.int16).repeat(3)
    roundtrip(RANS, np.random.default_rng(1).permutation(every).astype(np.int8))
    roundtrip(RANS, np.array([-32768, 32767, 0], dtype=np.int16))


def test_rans_empty_stream():
    info = StreamInfo("int8", 0, None, None)
    assert not RANS.accepts(info)
    out = RANS.decode(RANS.encode(np.zeros(0, np.int8), info), info)
    assert out.dtype == np.int8 and out.size == 0


def test_rans_long_stream_within_half_percent_of_entropy_plus_table():
    rng = np.random.default_rng(2)
    arr = np.clip(np.round(rng.normal(0, 12, 600_000)), -127, 127).astype(np.int8)
    blob = roundtrip(RANS, arr)
    a = int(arr.max()) - int(arr.min()) + 1
    table = len(blob) - _body_len(blob, a)  # header + frequency table bytes
    assert table < 2 * a + 8
    assert len(blob) <= 1.005 * (order0_entropy_bytes(arr) + table)


def _body_len(blob: bytes, a: int) -> int:
    pos = read_uvarint(blob, read_uvarint(blob, 0)[1])[1]
    return len(blob) - read_uvarints(blob, pos, a)[1]


def test_rans_truncated_and_corrupt_streams_raise_codec_error():
    rng = np.random.default_rng(3)
    arr = np.clip(np.round(rng.normal(0, 5, 20000)), -127, 127).astype(np.int8)
    info = stream_info_for(arr)
    blob = RANS.encode(arr, info)
    for cut in (0, 1, 5, len(blob) // 2, len(blob) - 1):
        with pytest.raises(CodecError):
            RANS.decode(blob[:cut], info)
    with pytest.raises(CodecError):
        RANS.decode(blob + b"\0\0", info)
    detected = 0
    for i in range(200):
        bad = bytearray(blob)
        pos = int(rng.integers(0, len(bad)))
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        try:
            out = RANS.decode(bytes(bad), info)
        except CodecError:
            detected += 1
        else:
            assert out.size == arr.size and out.dtype == arr.dtype
    assert detected > 150  # final-state and word-count checks catch nearly every flip


def test_rans_lying_lengths_fail_before_allocating():
    info = StreamInfo("int8", 10**9, -2, 2)  # a header claiming a billion symbols
    out = bytearray()
    for v in (15, 5, 1 << 13, 1 << 13, 1 << 13, 1 << 13, 0):  # sum is 2^15
        write_uvarint(out, v)
    write_uvarint(out, 10**6)  # lanes
    write_uvarint(out, 10**12)  # words
    tracemalloc.start()
    with pytest.raises(CodecError):
        RANS.decode(bytes(out) + b"\0" * 64, info)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20


def test_rans_bad_table_sum_is_rejected():
    out = bytearray()
    for v in (15, 3, 100, 100, 100):
        write_uvarint(out, v)
    states = np.full(1, 1 << 16, dtype=np.uint32)
    blob = bytes(out) + write_body(states, np.zeros(0, np.uint16))
    with pytest.raises(CodecError, match="frequency table"):
        RANS.decode(blob, StreamInfo("int8", 1, 0, 2))


def weight_like_matrix(seed: int, rows: int, cols: int, bits: int = 8) -> np.ndarray:
    """Codes of a matrix whose spread varies by row and by column, as trained weights do."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(rows, cols)) * np.exp(rng.normal(0, 0.4, (rows, 1))) * np.exp(rng.normal(0, 0.5, (1, cols)))
    qmax = 2 ** (bits - 1) - 1
    scale = np.abs(w).max(axis=1, keepdims=True) / qmax
    return np.clip(np.round(w / scale), -qmax, qmax).astype(np.int8)


@pytest.mark.parametrize("shape,bits", [((64, 96), 8), ((200, 128), 6), ((1, 300), 4), ((300, 1), 8)])
def test_context_codec_roundtrip(shape, bits):
    q = weight_like_matrix(4, *shape, bits=bits)
    roundtrip(CTX, q.reshape(-1), matrix_info(q))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**31 - 1), st.integers(1, 127))
def test_context_codec_roundtrip_random(rows, cols, seed, qmax):
    rng = np.random.default_rng(seed)
    q = rng.integers(-qmax, qmax + 1, (rows, cols)).astype(np.int8)
    roundtrip(CTX, q.reshape(-1), matrix_info(q))


def test_context_codec_beats_order0_when_spread_varies_by_row_and_column():
    q = weight_like_matrix(5, 512, 512)
    info = matrix_info(q)
    ctx = roundtrip(CTX, q.reshape(-1), info)
    order0 = roundtrip(RANS, q.reshape(-1), stream_info_for(q.reshape(-1)))
    assert len(ctx) < 0.97 * len(order0)
    assert len(ctx) < 0.97 * order0_entropy_bytes(q)


def test_context_codec_needs_a_matrix_shape():
    q = weight_like_matrix(6, 8, 8)
    assert not CTX.accepts(stream_info_for(q.reshape(-1)))
    assert CTX.accepts(matrix_info(q))


def test_context_codec_corrupt_streams_raise_codec_error():
    q = weight_like_matrix(7, 64, 64)
    info = matrix_info(q)
    blob = CTX.encode(q.reshape(-1), info)
    for cut in (0, 3, 20, len(blob) // 2, len(blob) - 1):
        with pytest.raises(CodecError):
            CTX.decode(blob[:cut], info)
    rng = np.random.default_rng(8)
    for _ in range(100):
        bad = bytearray(blob)
        bad[int(rng.integers(0, len(bad)))] ^= 1 << int(rng.integers(0, 8))
        try:
            out = CTX.decode(bytes(bad), info)
        except CodecError:
            continue
        assert out.size == q.size and out.dtype == np.int8
