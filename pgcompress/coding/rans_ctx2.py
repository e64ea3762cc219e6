"""``rans-ctx2``: rans-ctx's row x column width model in one rANS body, with less coder overhead.

Blob (all integers LEB128; z = zigzag):
    sb, e, K, R, C, z(t0), tail, u[0..K-1]        model (as rans-ctx, plus the tail step count)
    A, m, u, e for rows, then for columns         side tables (Student-t centred on m, see ctx2_dec)
    rANS body (lanes, word count, states, words): R + C side indices, then R * C codes row-major

The codes model is rans-ctx's (ctx_dec); what this codec cuts is rans-ctx's overhead, which the
code-set benchmark measured at ~1% of an int6 matrix (bench/results/coders.md): two side blobs with
their own tables and lane states, and ~3 B a lane of final state and initial state. Here the side
indices ride in the same lanes, the initial states carry the last few codes of each lane (ctx2_dec
explains the tail; rANS codes its first symbols from a small state poorly, so this saves ~0.8-1 B
a lane, not the 2 B the initial state takes), and the decode loop is leaner, so a lane carries 2048
codes instead of 1024. The one model change: the encoder picks, per matrix, how finely the row and
column widths are quantized (3-8 steps an octave) by the model's ideal size, tables included; the
decoder reads the same integer indices either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pgcompress.coding.base import Codec, StreamInfo
from pgcompress.coding.ctx2_dec import MAX_SIDE_ALPHABET, MAX_TAIL_STEPS, ctx2_side_tables, rans_ctx2_decode
from pgcompress.coding.ctx_dec import MAX_CONTEXTS, MAX_CTX_ALPHABET, ctx_tables
from pgcompress.coding.rans import symbol_stream_ok
from pgcompress.coding.rans_ctx import SCALE_BITS, _fit_widths, matrix_shape, rank1_widths, zigzag
from pgcompress.coding.rans_dec import MAX_LANES, MAX_STEPS, RANS_L
from pgcompress.coding.rans_enc import rans_body, write_uvarint
from pgcompress.errors import CodecError
from pgcompress.registry import register_codec

# A lane costs ~2.7 B (coder overhead / lanes, bench/results/coders.md), a decode step a fixed few us
# of numpy calls. At 2048 codes a lane the shared checkpoint's artifacts decode about as fast as with
# rans-ctx at 1024; 3072 saves another ~0.1% but decoded ~20% slower, over 2 s there (same file).
SYMBOLS_PER_LANE = 2048
# Steps per octave tried for the row/column log-widths (rans-ctx uses 4); each matrix keeps the one
# of least ideal size. The decoder only sees the integer indices, so this costs nothing to decode.
WIDTH_STEPS = (3, 4, 5, 6, 8)


def _fit_side(values: np.ndarray) -> list[int]:
    """values: [n] indices 0..A-1 -> [A, m, u, e] of the Student-t table that codes them smallest."""
    a = int(values.max()) + 1
    m = int(np.median(values))
    hist = np.bincount(values, minlength=a)[None, :]
    e, us = _fit_widths(hist, -m, a - 1 - m)
    return [a, m, int(us[0]), int(e)]


def lanes_encode(f_sym: np.ndarray, c_sym: np.ndarray, phases: list[int], lanes: int,
                 sb: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Symbols of consecutive phases (frequency and cumulative frequency per symbol, concatenated
    in decode order; phase p's symbol i goes to lane i % lanes) -> (states [lanes] uint32,
    words [W] uint16 in decode order, tail steps), the layout ctx2_lanes_run reads."""
    steps = []
    off = 0
    for n in phases:
        steps += [(off + a, min(lanes, n - a)) for a in range(0, n, lanes)]
        off += n
    last_phase_steps = -(-phases[-1] // lanes)
    f_sym = f_sym.astype(np.uint64)
    c_sym = c_sym.astype(np.uint64)
    if np.any(f_sym == 0):
        raise CodecError("a symbol has frequency 0 in its table")
    shift = np.uint64(sb)
    x = np.ones(lanes, dtype=np.uint64)
    # The tail: as many final steps as keep every lane's state d with L - 1 + d < 2^32.
    tail = 0
    limit = np.uint64((1 << 32) - RANS_L)
    while tail < min(MAX_TAIL_STEPS, last_phase_steps):
        a, k = steps[len(steps) - 1 - tail]
        f, c = f_sym[a:a + k], c_sym[a:a + k]
        xs = ((x[:k] // f) << shift) + (x[:k] % f) + c
        if xs.max() > limit:
            break
        x[:k] = xs
        tail += 1
    x += np.uint64(RANS_L - 1)
    x_max_shift = np.uint64(32 - sb)
    chunks = []
    for a, k in reversed(steps[:len(steps) - tail]):
        f = f_sym[a:a + k]
        xs = x[:k]
        emit = xs >= (f << x_max_shift)
        if emit.any():
            chunks.append((xs[emit] & np.uint64(0xFFFF)).astype(np.uint16))
            xs = np.where(emit, xs >> np.uint64(16), xs)
        x[:k] = ((xs // f) << shift) + (xs % f) + c_sym[a:a + k]
    chunks.reverse()
    words = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint16)
    return x.astype(np.uint32), words, tail


def _per_symbol(freq: np.ndarray, row: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """freq: [K, A] tables; row, idx: [n] table and symbol -> (frequency [n], cumulative frequency [n])."""
    a = freq.shape[1]
    g = row.astype(np.int64) * a + idx.astype(np.int64)
    cum = np.cumsum(freq, axis=1) - freq
    return freq.reshape(-1)[g], cum.reshape(-1)[g]


@dataclass
class Ctx2Model:
    """What rans-ctx2 codes a matrix with: header integers and per-symbol table entries.

    head: the blob's integers before the rANS body; freq, cum: [R + C + R * C] frequency and
    cumulative frequency of every symbol in decode order (side indices, then codes); phases: the
    two phases' symbol counts; ideal_side/ideal_codes: sum of -log2(f / 2^sb) in bytes per phase.
    """

    head: list[int]
    freq: np.ndarray
    cum: np.ndarray
    phases: list[int]
    ideal_side: float
    ideal_codes: float


def _uvarint_len(v: int) -> int:
    return max(1, -(-int(v).bit_length() // 7))


def fit_model(q: np.ndarray, lo: int, hi: int, width_steps: tuple[int, ...] | None = None) -> Ctx2Model:
    """q: [R, C] integer codes in [lo, hi] -> the model rans-ctx2 codes them with: the width
    quantization (steps per octave, which only the encoder knows; ``width_steps``, default
    WIDTH_STEPS) of least ideal size + header."""
    a, b = rank1_widths(q)
    best = None
    for steps in width_steps or WIDTH_STEPS:
        ia = np.round(steps * np.log2(a)).astype(np.int64)
        jb = np.round(steps * np.log2(b)).astype(np.int64)
        model = _fit_model_at(q, lo, hi, ia - ia.min(), jb - jb.min())
        size = model.ideal_side + model.ideal_codes + sum(_uvarint_len(v) for v in model.head)
        if best is None or size < best[0]:
            best = (size, model)
    return best[1]


def _fit_model_at(q: np.ndarray, lo: int, hi: int, ia: np.ndarray, jb: np.ndarray) -> Ctx2Model:
    """The model for given row and column log-width indices ia [R], jb [C] (min 0)."""
    r, c = q.shape
    if max(int(ia.max()), int(jb.max())) >= MAX_SIDE_ALPHABET:
        raise CodecError("rans-ctx2: row or column widths span too many octaves")
    t = ia[:, None] + jb[None, :]
    t0 = int(t.min())
    k = min(MAX_CONTEXTS, int(t.max()) - t0 + 1)
    ctx = np.clip(t - t0, 0, k - 1).reshape(-1)
    idx = q.reshape(-1).astype(np.int64) - lo
    a = hi - lo + 1
    hist = np.bincount(ctx * a + idx, minlength=k * a).reshape(k, a)
    e, us = _fit_widths(hist, lo, hi)
    side = [_fit_side(ia), _fit_side(jb)]
    f1, c1 = _per_symbol(ctx2_side_tables(side, SCALE_BITS), np.repeat([0, 1], [r, c]), np.concatenate([ia, jb]))
    f2, c2 = _per_symbol(ctx_tables(us, e, lo, hi, SCALE_BITS), ctx, idx)
    head = [SCALE_BITS, e, k, r, c, zigzag(t0), 0, *us.tolist(), *side[0], *side[1]]
    ideal = [float(-np.log2(f / 2.0 ** SCALE_BITS).sum() / 8) for f in (f1, f2)]
    return Ctx2Model(head, np.concatenate([f1, f2]), np.concatenate([c1, c2]), [r + c, idx.size], *ideal)


def lanes_for(n: int) -> int:
    return int(min(MAX_LANES, max(1, n // SYMBOLS_PER_LANE, -(-n // MAX_STEPS))))


class RansCtx2Codec(Codec):
    name = "rans-ctx2"
    decode_fn = staticmethod(rans_ctx2_decode)

    def accepts(self, info: StreamInfo) -> bool:
        return symbol_stream_ok(info) and matrix_shape(info) is not None and info.hi - info.lo < MAX_CTX_ALPHABET

    def fit(self, q: np.ndarray, lo: int, hi: int) -> Ctx2Model:
        """The model this codec codes matrix q (values in [lo, hi]) with."""
        return fit_model(q, lo, hi)

    def encode(self, arr: np.ndarray, info: StreamInfo) -> bytes:
        shape = matrix_shape(info)
        if not self.accepts(info) or shape is None:
            raise CodecError(f"{self.name} needs a non-empty 2-D integer matrix with a value range")
        model = self.fit(arr.reshape(shape), info.lo, info.hi)
        states, words, tail = lanes_encode(model.freq, model.cum, model.phases, lanes_for(info.count), SCALE_BITS)
        model.head[6] = tail
        out = bytearray()
        for value in model.head:
            write_uvarint(out, int(value))
        return bytes(out) + rans_body(states, words)


register_codec(RansCtx2Codec())
