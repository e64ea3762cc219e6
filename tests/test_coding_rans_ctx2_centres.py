"""rans-ctx2 with row/column centres: lossless on ragged and degenerate matrices with offsets; on
codes with row/column offsets, near the entropy of the source that made them (computed from that
source, not from the coder) and well below the same codec's model without centres; exactly the
no-centres blob where there are no offsets; hostile blobs rejected with CodecError before anything
large is allocated."""

from __future__ import annotations

import math
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coding_helpers import assert_corruption_detected, assert_refused_before_allocating, assert_roundtrip, leb128, \
    matrix_info
from pgcompress.coding.base import StreamInfo
from pgcompress.coding.ctx_model import fit_widths_model
from pgcompress.coding.rans_core import lanes_for, read_uvarint
from pgcompress.coding.rans_ctx2 import SYMBOLS_PER_LANE, encode_model
from pgcompress.errors import CodecError
from pgcompress.registry import get_codec
from test_coding_rans_ctx2 import weight_like_matrix

CTX = get_codec("rans-ctx2")


def centre_mode(blob: bytes) -> int:
    """Which centres a blob carries (bit 0 rows, bit 1 columns): its second header integer >> 3."""
    return read_uvarint(blob, read_uvarint(blob, 0)[1])[0] >> 3


def no_centres_blob(q: np.ndarray) -> bytes:
    """The blob of the codec's model without centres (its widths model alone)."""
    model = fit_widths_model(q, int(q.min()), int(q.max()))
    return encode_model(model, lanes_for(q.size, SYMBOLS_PER_LANE))


def roundtrip(q: np.ndarray) -> bytes:
    return assert_roundtrip(CTX, q)


def offset_matrix(seed: int, rows: int, cols: int, sigma: float = 2.4, col_sd: float = 1.0,
                  row_sd: float = 0.0) -> tuple[np.ndarray, float]:
    """Integer offsets per column (and row) plus rounded Gaussian noise of width sigma, clipped
    to int6 -> (codes, the noise's exact entropy in bytes for all elements, from the Gaussian)."""
    rng = np.random.default_rng(seed)
    cc = np.round(rng.normal(0, col_sd, cols)) if col_sd else np.zeros(cols)
    rc = np.round(rng.normal(0, row_sd, rows)) if row_sd else np.zeros(rows)
    noise = np.round(rng.normal(0, sigma, (rows, cols)))
    q = np.clip(noise + cc[None, :] + rc[:, None], -31, 31).astype(np.int8)
    v = np.arange(-40, 41)
    p = np.array([math.erf((x + .5) / (sigma * math.sqrt(2))) - math.erf((x - .5) / (sigma * math.sqrt(2)))
                  for x in v]) / 2
    h = float(-(p[p > 0] * np.log2(p[p > 0])).sum())
    return q, h * rows * cols / 8


@pytest.mark.parametrize("shape,bits", [((1, 1), 8), ((1, 7), 6), ((7, 1), 6), ((3, 5000), 6), ((5000, 3), 4),
                                        ((97, 131), 8), ((300, 257), 6)])
def test_roundtrip_ragged_shapes(shape, bits):
    q = weight_like_matrix(1, *shape, bits=bits)
    roundtrip(q)
    shifted = np.clip(q.astype(np.int16) + np.arange(shape[1]) % 5 - 2, -128, 127).astype(np.int8)
    roundtrip(shifted)  # with column offsets


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 60), st.integers(1, 60), st.integers(0, 2**31 - 1), st.integers(0, 127), st.integers(0, 20))
def test_roundtrip_random(rows, cols, seed, qmax, shift):
    rng = np.random.default_rng(seed)
    q = rng.integers(-qmax, qmax + 1, (rows, cols)) + rng.integers(-shift, shift + 1, (1, cols))
    roundtrip(np.clip(q, -128, 127).astype(np.int8))


def test_single_symbol_and_constant_columns():
    assert len(roundtrip(np.full((64, 80), -5, dtype=np.int8))) < 90  # nothing to code but the header
    q = weight_like_matrix(2, 128, 96, bits=6)
    q[:, ::3] = 0  # all-equal columns
    q[:, 1::7] = 9  # all-equal columns away from zero: a centre each
    q[5] = 7  # an all-equal row
    roundtrip(q)
    roundtrip(np.array([[-128, 127]], dtype=np.int8))  # the extremes, alone
    roundtrip(np.array([[-128], [127]], dtype=np.int8))
    big = weight_like_matrix(3, 40, 50).astype(np.int16) * 200  # int16 codes, wide range
    roundtrip(np.clip(big, -2000, 2000))
    wide = np.zeros((2, 1200), dtype=np.int16)
    wide[0] = np.arange(1200) - 600  # a wide range, all in one row (a row centre of its own)
    roundtrip(wide)


@pytest.mark.parametrize("row_sd,col_sd,mode", [(0.0, 1.0, 2), (1.0, 0.0, 1), (1.0, 1.0, 3)])
def test_near_the_source_entropy_with_offsets(row_sd, col_sd, mode):
    """Codes made from known offsets + Gaussian noise: the codec finds the offsets (the mode it
    picks says which), comes within 1.5% of the noise's entropy (the offsets' own cost is a few
    bits a row/column), and beats its own model without centres by over 3%."""
    q, h = offset_matrix(11, 768, 512, row_sd=row_sd, col_sd=col_sd)
    blob = roundtrip(q)
    assert centre_mode(blob) == mode
    assert h < len(blob) < 1.015 * h
    assert len(blob) < 0.97 * len(no_centres_blob(q))


def test_no_cost_without_offsets():
    """A matrix with no offsets: no centres, and exactly the blob of the model without centres."""
    for bits in (6, 8):
        q = weight_like_matrix(4, 512, 512, bits=bits)
        blob = roundtrip(q)
        assert centre_mode(blob) == 0
        assert blob == no_centres_blob(q)


def test_never_larger_than_without_centres():
    """Centres are kept only when they make the blob smaller (the encoder codes both)."""
    for seed in range(4):
        q, _ = offset_matrix(20 + seed, 48, 40, sigma=1.5 + seed, col_sd=0.3 * seed, row_sd=0.2 * seed)
        assert len(roundtrip(q)) <= len(no_centres_blob(q))


def hostile(k=1, r=4, c=4, tail=0, mode=0, elo=6, ea=7, side=(1, 0, 16, 3, 1, 0, 16, 3), centres=(),
            lanes=1, nwords=0, sb=15, us=(16,)):
    blob = leb128(sb, 3 | mode << 3, k, r, c, 0, tail, *((elo, ea) if mode else ()), *us, *side, *centres)
    blob += leb128(lanes, nwords) + b"\0\0\1\0" * lanes + b"\0\0" * nwords
    return bytes(blob)


HOSTILE = [
    ({"k": 65, "us": (16,) * 65}, "contexts"),
    ({"us": (0,)}, "width"),
    ({"sb": 30}, "scale bits"),
    ({"r": 5}, "matrix"),
    ({"mode": 4}, "centre mode"),
    ({"mode": 1, "ea": 0}, "residual values"),
    ({"mode": 2, "ea": 1 << 30}, "residual values"),
    ({"side": (1 << 40, 0, 16, 3, 1, 0, 16, 3)}, "side table"),
    ({"mode": 1, "centres": (0, 1 << 40, 0, 16, 3)}, "side table"),
    ({"mode": 2, "centres": (0, 4, 4, 16, 3)}, "side table"),
    ({"mode": 3, "centres": (0, 4, 0, 16, 3)}, "truncated|side table|corrupt"),
    ({"tail": 17}, "tail"),
    ({"lanes": 5000}, "lanes"),
    ({"nwords": 3}, "renormalisation|final coder"),
]


@pytest.mark.parametrize("kwargs,match", HOSTILE)
def test_hostile_headers_raise(kwargs, match):
    with pytest.raises(CodecError, match=match):
        CTX.decode(hostile(**kwargs), StreamInfo("int8", 16, -3, 3))


def test_codes_outside_the_declared_range_are_refused():
    q, _ = offset_matrix(12, 64, 64)
    blob = CTX.encode(q.reshape(-1), matrix_info(q))
    lo, hi = int(q.min()), int(q.max())
    with pytest.raises(CodecError, match="outside the declared range"):
        CTX.decode(blob, StreamInfo("int8", q.size, lo + 1, hi))


def test_lying_lengths_fail_before_allocating():
    info = StreamInfo("int8", 10**9, -3, 3)
    blob = leb128(15, 3 | 3 << 3, 1, 10**5, 10**4, 0, 0, 6, 7, 16, 1, 0, 16, 3, 1, 0, 16, 3, 0, 1, 0, 16, 3, 0, 1, 0,
                  16, 3)
    blob += leb128(4096, 10**12) + b"\0" * 64
    assert_refused_before_allocating(CTX, bytes(blob), info)


def test_truncated_and_flipped_blobs():
    assert_corruption_detected(CTX, offset_matrix(7, 64, 64, row_sd=1.0)[0])
