"""``rans-ctx``: rANS over a weight matrix's codes with row x column scale contexts (see ctx_dec).

Blob (all integers LEB128; z = zigzag):
    sb, e, K, R, C, z(t0), u[0..K-1]          model
    A, len, rans blob (ia: [R] values 0..A-1)  row log-width indices (order-0 rANS, as ``rans``)
    B, len, rans blob (jb: [C] values 0..B-1)  column log-width indices
    rANS body (lanes, word count, states, words), symbols = value - lo, row-major

Why: in a trained matrix the spread of the codes varies by row (output unit) and by column
(input feature), and their product predicts it well. On the shared checkpoint's int8-ref codes
this codes ~4.4% smaller than one table per tensor (bench/results/coders.md), while the side information
costs ~1 byte per row and column and the K tables cost one integer each.
"""

from __future__ import annotations

import numpy as np

from pgcompress.coding.base import Codec, StreamInfo
from pgcompress.coding.ctx_dec import (MAX_CONTEXTS, MAX_CTX_ALPHABET, MAX_TAIL_EXP, SIGMA_UNIT, ctx_tables,
                                       rans_ctx_decode)
from pgcompress.coding.rans import rans0_encode, symbol_stream_ok
from pgcompress.coding.rans_dec import MAX_LANES
from pgcompress.coding.rans_enc import rans_body, rans_encode, write_uvarint
from pgcompress.errors import CodecError
from pgcompress.registry import register_codec

SCALE_BITS = 15
STEPS_PER_OCTAVE = 4
# Half rans' 2K symbols per lane: decode steps (numpy-call overhead) dominate a checkpoint's
# decode time, and the extra lane states cost ~0.1% here, where this codec saves ~4%.
SYMBOLS_PER_LANE = 1024


def matrix_shape(info: StreamInfo) -> tuple[int, int] | None:
    """(rows, cols) when the stream is known to be a 2-D matrix (``info.shape``), else None."""
    shape = getattr(info, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] * shape[1] != info.count or info.count == 0:
        return None
    return int(shape[0]), int(shape[1])


def rank1_widths(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """q: [R, C] codes -> row and column widths a [R], b [C] with |q| ~ a[r] * b[c]: a rank-1 fit
    by two alternating mean passes (b normalised to geometric mean 1)."""
    aq = np.abs(q.astype(np.float64)) + 0.25  # +0.25 keeps all-zero rows/columns finite
    a = aq.mean(axis=1)
    for _ in range(2):
        b = (aq / a[:, None]).mean(axis=0)
        b /= np.exp(np.log(b).mean())
        a = (aq / b[None, :]).mean(axis=1)
    return a, b


def _log_widths(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """q: [R, C] codes -> integer log2 widths (STEPS_PER_OCTAVE per octave) of rows and columns."""
    a, b = rank1_widths(q)
    ia = np.round(STEPS_PER_OCTAVE * np.log2(a)).astype(np.int64)
    jb = np.round(STEPS_PER_OCTAVE * np.log2(b)).astype(np.int64)
    return ia - ia.min(), jb - jb.min()


def _fit_widths(hist: np.ndarray, lo: int, hi: int) -> tuple[int, np.ndarray]:
    """hist: [K, A] counts per context -> (tail exponent e, widths u [K]) of least coded size.

    Fitted on the float model (a grid around each context's RMS); the integer tables the coder
    uses are built from the result, exactly as the decoder builds them.
    """
    v = np.arange(lo, hi + 1, dtype=np.float64)
    n = hist.sum(axis=1)
    rms = np.sqrt((hist * v * v).sum(axis=1) / np.maximum(n, 1))
    grid = np.exp(np.linspace(np.log(0.5), np.log(2.0), 41))  # x rms
    best_total, best = None, None
    for e in range(1, MAX_TAIL_EXP + 1):
        nu = float((2 << e) - 1)
        us = np.maximum(1, np.round(SIGMA_UNIT * np.maximum(rms, 0.3)[:, None] * grid[None, :]))  # [K, G]
        s2 = (us / SIGMA_UNIT) ** 2
        p = (1.0 + v[None, None, :] ** 2 / (nu * s2[:, :, None])) ** -(2.0 ** e)  # [K, G, A]
        p = p / p.sum(axis=2, keepdims=True)
        cost = -(hist[:, None, :] * np.log2(np.maximum(p, 1e-300))).sum(axis=2)  # [K, G]
        pick = cost.argmin(axis=1)
        total = cost[np.arange(len(us)), pick].sum()
        if best_total is None or total < best_total:
            best_total, best = total, (e, us[np.arange(len(us)), pick].astype(np.int64))
    return best


def _side_blob(values: np.ndarray) -> tuple[int, bytes]:
    """Row/column indices 0..A-1 as a ``rans`` blob -> (A, blob).

    One lane per 64 values: these streams are short, and one lane would cost a decode step each.
    """
    a = int(values.max()) + 1
    return a, rans0_encode(values, a, max(1, values.size // 64))


def zigzag(x: int) -> int:
    return 2 * x if x >= 0 else -2 * x - 1


class RansCtxCodec(Codec):
    name = "rans-ctx"
    decode_fn = staticmethod(rans_ctx_decode)

    def accepts(self, info: StreamInfo) -> bool:
        return symbol_stream_ok(info) and matrix_shape(info) is not None and info.hi - info.lo < MAX_CTX_ALPHABET

    def encode(self, arr: np.ndarray, info: StreamInfo) -> bytes:
        shape = matrix_shape(info)
        if not self.accepts(info) or shape is None:
            raise CodecError("rans-ctx needs a non-empty 2-D integer matrix with a value range")
        r, c = shape
        q = arr.reshape(r, c)
        ia, jb = _log_widths(q)
        t = ia[:, None] + jb[None, :]
        t0 = int(t.min())
        k = min(MAX_CONTEXTS, int(t.max()) - t0 + 1)
        ctx = np.clip(t - t0, 0, k - 1).reshape(-1)
        idx = q.reshape(-1).astype(np.int64) - info.lo
        a = info.hi - info.lo + 1
        hist = np.bincount(ctx * a + idx, minlength=k * a).reshape(k, a)
        e, us = _fit_widths(hist, info.lo, info.hi)
        freq = ctx_tables(us, e, info.lo, info.hi, SCALE_BITS)
        out = bytearray()
        for value in (SCALE_BITS, e, k, r, c, zigzag(t0)):
            write_uvarint(out, value)
        for u in us.tolist():
            write_uvarint(out, u)
        for side in (ia, jb):
            n_vals, blob = _side_blob(side)
            write_uvarint(out, n_vals)
            write_uvarint(out, len(blob))
            out += blob
        lanes = int(min(MAX_LANES, max(1, idx.size // SYMBOLS_PER_LANE)))
        states, words = rans_encode(idx, freq, SCALE_BITS, lanes, ctx)
        return bytes(out) + rans_body(states, words)


register_codec(RansCtxCodec())
