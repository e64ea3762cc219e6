"""rans-ctx2: lossless on ragged and degenerate matrices, near its own model's code length, and
hostile blobs rejected with CodecError before anything large is allocated."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coding_helpers import assert_corruption_detected, assert_refused_before_allocating, assert_roundtrip, leb128
from pgcompress.coding.base import StreamInfo
from pgcompress.coding.ctx_model import ctx_table
from pgcompress.coding.rans_core import lanes_encode
from pgcompress.errors import CodecError
from pgcompress.registry import get_codec

CTX2 = get_codec("rans-ctx2")


def weight_like_matrix(seed: int, rows: int, cols: int, bits: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(rows, cols)) * np.exp(rng.normal(0, 0.4, (rows, 1))) * np.exp(rng.normal(0, 0.5, (1, cols)))
    qmax = 2 ** (bits - 1) - 1
    scale = np.abs(w).max(axis=1, keepdims=True) / qmax
    return np.clip(np.round(w / scale), -qmax, qmax).astype(np.int8)


def roundtrip(q: np.ndarray) -> bytes:
    return assert_roundtrip(CTX2, q)


@pytest.mark.parametrize("shape,bits", [((1, 1), 8), ((1, 7), 6), ((7, 1), 6), ((3, 5000), 6), ((5000, 3), 4),
                                        ((97, 131), 8), ((300, 257), 6)])
def test_roundtrip_ragged_shapes(shape, bits):
    roundtrip(weight_like_matrix(1, *shape, bits=bits))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 60), st.integers(1, 60), st.integers(0, 2**31 - 1), st.integers(0, 127))
def test_roundtrip_random(rows, cols, seed, qmax):
    rng = np.random.default_rng(seed)
    roundtrip(rng.integers(-qmax, qmax + 1, (rows, cols)).astype(np.int8))


def test_single_symbol_and_constant_columns():
    assert len(roundtrip(np.full((64, 80), -5, dtype=np.int8))) < 80  # nothing to code but the header
    q = weight_like_matrix(2, 128, 96, bits=6)
    q[:, ::3] = 0  # all-equal columns
    q[5] = 7  # an all-equal row
    roundtrip(q)
    roundtrip(np.array([[-128, 127]], dtype=np.int8))  # the extremes, alone
    big = weight_like_matrix(3, 40, 50).astype(np.int16) * 200  # int16 codes, wide range
    roundtrip(np.clip(big, -2000, 2000))


def test_lanes_encode_matches_its_ideal_code_length():
    """Independent check of the coder: bytes vs sum of -log2(f / 2^sb) over the symbols."""
    rng = np.random.default_rng(5)
    f = ctx_table(48, 3, -31, 31, 15)
    idx = rng.choice(63, size=200_000, p=f / f.sum())
    cum = np.cumsum(f) - f
    states, words, tail = lanes_encode(f[idx], cum[idx], [idx.size], 64, 15)
    ideal = float(-np.log2(f[idx] / 2.0**15).sum() / 8)
    size = 4 * states.size + 2 * words.size
    assert ideal - 8 < size < ideal * 1.001 + 4 * states.size and tail >= 1


def hostile(k=1, r=4, c=4, tail=0, side=(1, 0, 16, 3, 1, 0, 16, 3), lanes=1, nwords=0, sb=15, us=(16,)):
    blob = leb128(sb, 3, k, r, c, 0, tail, *us, *side)
    blob += leb128(lanes, nwords) + b"\0\0\1\0" * lanes + b"\0\0" * nwords
    return bytes(blob)


@pytest.mark.parametrize("kwargs,match", [
    ({"k": 65, "us": (16,) * 65}, "contexts"),
    ({"us": (0,)}, "width"),
    ({"sb": 30}, "scale bits"),
    ({"r": 5}, "matrix"),
    ({"side": (1 << 40, 0, 16, 3, 1, 0, 16, 3)}, "side table"),
    ({"side": (4, 4, 16, 3, 1, 0, 16, 3)}, "side table"),
    ({"side": (4, 0, 16, 9, 1, 0, 16, 3)}, "side table"),
    ({"tail": 17}, "tail"),
    ({"lanes": 5000}, "lanes"),
    ({"nwords": 3}, "renormalisation|final coder"),
])
def test_hostile_headers_raise(kwargs, match):
    with pytest.raises(CodecError, match=match):
        CTX2.decode(hostile(**kwargs), StreamInfo("int8", 16, -3, 3))


def test_lying_lengths_fail_before_allocating():
    info = StreamInfo("int8", 10**9, -3, 3)
    blob = leb128(15, 3, 1, 10**5, 10**4, 0, 0, 16, 1, 0, 16, 3, 1, 0, 16, 3) + leb128(4096, 10**12) + b"\0" * 64
    assert_refused_before_allocating(CTX2, bytes(blob), info)


def test_truncated_and_flipped_blobs():
    assert_corruption_detected(CTX2, weight_like_matrix(7, 64, 64, bits=6))  # final states, word count, tail
