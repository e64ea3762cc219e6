"""``rans-ctx2``: the context codec for integer code matrices (model: ctx_model; coder: rans_core).

Blob (all integers LEB128; z = zigzag):
    sb, e | mode << 3, K, R, C, z(t0), tail          model; mode: which centres (bit 0 rows, bit 1 columns)
    z(elo), EA                                       only when mode != 0: residuals lie in [elo, elo + EA)
    u[0..K-1]                                        context widths
    A, m, u, e for row widths, then column widths    side tables
    z(min), A, m, u, e per centre vector present     (rows first; index = centre - min)
    rANS body: phase 1 the side indices (R row and C column widths, then the R row and C column
    centres present), phase 2 the R * C residuals (= codes when mode is 0) row-major, with ``tail``
    steps at its end coded without renormalisation (rans_core).

With mode 0 the residuals are the codes and their range is the stream's [lo, hi]. The decoder checks
that every rebuilt code lies in [lo, hi]. The codec's name is what artifacts store; the blob layout with
mode 0 is the one rans-ctx2 always had.

The encoder fits the widths model of the codes (no centres, the widths quantized 3-8 steps an octave
by least ideal size) and, when some rounded row or column mean is not 0, the best centred model;
it codes both and keeps the smaller blob (ties: no centres).
"""

from __future__ import annotations

import numpy as np

from pgcompress.coding.base import Codec, StreamInfo
from pgcompress.coding.ctx_model import (MAX_CONTEXTS, MAX_CTX_ALPHABET, CtxModel, best_centres, check_ctx_params,
                                         ctx_index, ctx_tables, fit_centred_model, fit_widths_model, side_tables)
from pgcompress.coding.rans_core import (MAX_TAIL_STEPS, check_end, lanes_decode, lanes_encode, lanes_for,
                                         read_body, read_uvarints, slot_tables, symbol_stream_ok, unzigzag, write_body,
                                         write_uvarint)
from pgcompress.errors import CodecError
from pgcompress.registry import register_codec

# A lane costs ~2.7 B (coder overhead / lanes, bench/results/coders.md), a decode step a fixed few us
# of numpy calls. At 2048 codes a lane the shared checkpoint's artifacts decode in about the time the
# first context codec took at 1024; 3072 saves another ~0.1% but decoded ~20% slower (same file).
SYMBOLS_PER_LANE = 2048


def rans_ctx2_decode(blob, dtype, count, lo, hi):
    """blob -> [count] array of ``dtype`` (a matrix's codes, row-major; layout above)."""
    if lo is None or hi is None or not 1 <= hi - lo + 1 <= MAX_CTX_ALPHABET:
        raise CodecError(f"rans-ctx2 needs a value range of 1 to {MAX_CTX_ALPHABET} values, not {lo}..{hi}")
    buf = memoryview(blob).cast("B")
    head, pos = read_uvarints(buf, 0, 7)
    sb, e, k, r, c, t0, tail = (int(v) for v in head)
    mode = e >> 3
    e &= 7
    t0 = unzigzag(t0)
    if r * c != count or count == 0:
        raise CodecError(f"corrupt stream ({r} x {c} matrix for {count} symbols)")
    elo, ea = lo, hi - lo + 1
    if mode:
        (elo, ea), pos = read_uvarints(buf, pos, 2)
        elo, ea = unzigzag(int(elo)), int(ea)
        if mode > 3 or not 1 <= ea <= MAX_CTX_ALPHABET:
            raise CodecError(f"corrupt stream (centre mode {mode}, {ea} residual values)")
    us, pos = read_uvarints(buf, pos, k) if k <= MAX_CONTEXTS else (None, pos)
    check_ctx_params(e, k, us, sb)
    side, pos = read_uvarints(buf, pos, 8)
    params = [side[:4].tolist(), side[4:].tolist()]
    centres = []  # (length, shape to broadcast, lowest centre) of each centre vector present
    for bit, n, shape in ((1, r, (r, 1)), (2, c, (1, c))):
        if mode & bit:
            p, pos = read_uvarints(buf, pos, 5)
            params.append(p[1:].tolist())
            centres.append((n, shape, unzigzag(int(p[0]))))
    lens = [r, c] + [n for n, _, _ in centres]
    side_freq = side_tables(params, sb)
    x, words = read_body(buf, pos, count)
    if tail > min(MAX_TAIL_STEPS, -(-count // x.size)):
        raise CodecError(f"corrupt stream ({tail} tail steps)")
    m = 1 << sb
    side_off = np.repeat(np.arange(len(lens), dtype=np.int64) * m, lens)
    sides, pos = lanes_decode(x, words, 0, sum(lens), sb, slot_tables(side_freq, sb), side_off, None)
    off = ctx_index(sides[:r], sides[r:r + c], t0, k) * m
    res, pos = lanes_decode(x, words, pos, count, sb, slot_tables(ctx_tables(us, e, elo, elo + ea - 1, sb), sb),
                            off, tail)
    check_end(x, words, pos)
    if not mode:
        return (res + lo).astype(dtype)
    q = res.reshape(r, c).astype(np.int64) + elo
    at = r + c
    for n, shape, low in centres:
        q += (sides[at:at + n].astype(np.int64) + low).reshape(shape)
        at += n
    if q.min() < lo or q.max() > hi:
        raise CodecError(f"corrupt stream (codes outside the declared range {lo}..{hi})")
    return q.reshape(-1).astype(dtype)


def matrix_shape(info: StreamInfo) -> tuple[int, int] | None:
    """(rows, cols) when the stream is known to be a 2-D matrix (``info.shape``), else None."""
    shape = getattr(info, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] * shape[1] != info.count or info.count == 0:
        return None
    return int(shape[0]), int(shape[1])


def encode_model(model: CtxModel, lanes: int) -> bytes:
    """A fitted model's blob: its header (with the tail the coder found) and the rANS body."""
    states, words, tail = lanes_encode(*model.symbols(), model.phases, lanes, model.head[0])
    out = bytearray()
    for i, value in enumerate(model.head):
        write_uvarint(out, tail if i == 6 else int(value))
    return bytes(out) + write_body(states, words)


class RansCtx2Codec(Codec):
    name = "rans-ctx2"
    decode_fn = staticmethod(rans_ctx2_decode)

    def accepts(self, info: StreamInfo) -> bool:
        return symbol_stream_ok(info) and matrix_shape(info) is not None and info.hi - info.lo < MAX_CTX_ALPHABET

    def models(self, q: np.ndarray, lo: int, hi: int) -> list[CtxModel]:
        """q: [R, C] codes in [lo, hi] -> the models the encoder codes (the smaller blob is kept):
        the widths model, and the best centred one when some rounded mean is not 0."""
        out = [fit_widths_model(q, lo, hi)]
        centres = best_centres(q)
        if centres is not None and (model := fit_centred_model(q, *centres)) is not None:
            out.append(model)
        return out

    def encode(self, arr: np.ndarray, info: StreamInfo) -> bytes:
        shape = matrix_shape(info)
        if not self.accepts(info) or shape is None:
            raise CodecError(f"{self.name} needs a non-empty 2-D integer matrix with a value range")
        lanes = lanes_for(info.count, SYMBOLS_PER_LANE)
        blobs = [encode_model(m, lanes) for m in self.models(arr.reshape(shape), info.lo, info.hi)]
        return min(blobs, key=len)


register_codec(RansCtx2Codec())
