"""The solver's rate estimate for code matrices (pgcompress.budget.rate.ctx_estimate) against the
context codec's real blob: never below it (the first allocation must fit) and close above it."""

from __future__ import annotations

import numpy as np
import pytest

from pgcompress.budget.rate import RateMeter, ctx_estimate
from pgcompress.coding.base import stream_info_for
from pgcompress.registry import get_codec


def _codes(seed: int, bits: int, offsets: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows, cols = 384, 256  # 96 KB of int8: over SMALL_STREAM_BYTES, where the meter estimates
    widths = np.exp(rng.normal(0, 0.4, rows))[:, None] * np.exp(rng.normal(0, 0.3, cols))[None, :]
    qmax = 2 ** (bits - 1) - 1
    q = np.clip(np.round(rng.standard_normal((rows, cols)) * widths * qmax / 3), -qmax, qmax)
    if offsets:
        q += (np.arange(rows) % 4 == 0)[:, None] * 2 + (np.arange(cols) % 7 == 0)[None, :]
    return q.astype(np.int8)


@pytest.mark.parametrize("bits", [2, 3, 5, 7])
@pytest.mark.parametrize("offsets", [False, True])
def test_estimate_bounds_the_real_blob_from_above_within_8_percent(bits, offsets):
    q = _codes(bits, bits, offsets)
    info = stream_info_for(q)
    real = len(get_codec("rans-ctx2").encode(q.reshape(-1), info))
    est = ctx_estimate(q.reshape(-1), info)
    assert real <= est <= real * 1.08, (est, real)  # 6% where the codec finds better centres


def test_meter_takes_the_smallest_of_the_estimate_and_the_real_coders():
    q = np.zeros((512, 256), dtype=np.int8)  # one symbol: order-0 rans or bitpack beat the context model
    q[0, 0] = 1
    meter = RateMeter()
    got = meter.stream_bytes(q)
    real = min(len(get_codec(c).encode(q.reshape(-1), stream_info_for(q))) for c in ("rans", "bitpack"))
    assert got == min(real, ctx_estimate(q.reshape(-1), stream_info_for(q)))


def test_a_matrix_the_context_codec_refuses_is_rated_by_the_others():
    q = np.arange(-3000, 3000, dtype=np.int16).reshape(60, 100)  # alphabet too wide for rans-ctx2
    info = stream_info_for(q)
    assert ctx_estimate(q.reshape(-1), info) is None
    assert RateMeter().stream_bytes(q) > 0


@pytest.mark.parametrize("shape", [(64, 64), (128, 64), (8, 8), (3, 64), (32, 256)])
@pytest.mark.parametrize("bits", [2, 4, 6])
@pytest.mark.parametrize("offsets", [False, True])
def test_small_matrices_are_estimated_never_below_the_real_blob(shape, bits, offsets):
    """Under SMALL_STREAM_BYTES the meter estimates too (a small model's table spent most of its time
    fitting rans-ctx2): still an upper bound on the codec's blob, and the meter's rate is never
    above the estimate or the other coders (they are still tried)."""
    rng = np.random.default_rng(bits * 100 + shape[0])
    rows, cols = shape
    widths = np.exp(rng.normal(0, 0.4, rows))[:, None] * np.exp(rng.normal(0, 0.3, cols))[None, :]
    qmax = 2 ** (bits - 1) - 1
    q = np.clip(np.round(rng.standard_normal((rows, cols)) * widths * qmax / 3), -qmax, qmax)
    if offsets:
        q += (np.arange(rows) % 4 == 0)[:, None] * 2 + (np.arange(cols) % 7 == 0)[None, :]
    q = q.astype(np.int8)
    info = stream_info_for(q)
    real = len(get_codec("rans-ctx2").encode(q.reshape(-1), info))
    est = ctx_estimate(q.reshape(-1), info)
    assert real <= est <= real * 1.3, (est, real)
    got = RateMeter().stream_bytes(q)
    others = [len(get_codec(c).encode(q.reshape(-1), info)) for c in ("rans", "bitpack", "zlib")]
    assert got <= min([est, *others])


def test_a_small_patterned_matrix_still_tries_the_byte_compressors():
    """Where a byte compressor beats the order-0 entropy (a repeating pattern), a small matrix's rate
    is that compressor's, not the context model's estimate."""
    q = np.zeros((64, 64), dtype=np.int8)
    q[::2, ::2] = 1  # order-0 entropy 0.81 bits a value; zlib finds the period
    info = stream_info_for(q)
    zlib_bytes = len(get_codec("zlib").encode(q.reshape(-1), info))
    assert zlib_bytes < min(ctx_estimate(q.reshape(-1), info), 64 * 64 * 0.81 / 8)
    assert RateMeter().stream_bytes(q) <= zlib_bytes
