"""Decode side of ``rans-ctx3``: rans-ctx2 with integer row and column centres.

rans-ctx2's model is centred on zero: code q[r, c] ~ Student-t of width a[r] * b[c]. Some
matrices are not. A briefly trained model keeps per-input-feature offsets in its first layers
(Adam's early updates share a sign down a column) and per-output offsets in zero-initialised
projections: on an 11-layer model trained 400 steps, integer column and row means were 0.4-0.8
code steps against a spread of ~2.4, and taking them out cut the codes' entropy by 2-3%
(bench/results/coders.md). Such offsets are a rank-1 pattern that LZ-style coders find by sorting
similar rows together; here they are modelled directly:

    q[r, c] = rc[r] + cc[c] + e[r, c],   e ~ rans-ctx2's width model (fitted to e, not to q)

``mode`` says which centres the blob carries (bit 0: rows, bit 1: columns); a matrix with none
costs three header integers more than in rans-ctx2 (mode, residual range: ~5 B). Blob (LEB128
integers; z = zigzag):

    sb, e, K, R, C, z(t0), tail, mode, z(elo), EA, u[0..K-1]   model; residuals lie in [elo, elo + EA)
    A, m, u, e for row widths, then for column widths           side tables (as rans-ctx2)
    z(min), A, m, u, e for row centres, then column centres     present ones only (index = centre - min)
    rANS body: side indices (R + C widths, then R row and C column centre indices), then R * C residuals

The decoder checks that every rebuilt code lies in the stream's declared [lo, hi].
"""

import numpy as np

from pgcompress.coding.ctx2_dec import ctx2_decode_body
from pgcompress.coding.ctx_dec import MAX_CONTEXTS, MAX_CTX_ALPHABET, check_ctx_params, unzigzag
from pgcompress.coding.rans_dec import read_uvarints
from pgcompress.errors import CodecError


def rans_ctx3_decode(blob, dtype, count, lo, hi):
    """blob -> [count] array of ``dtype`` (a matrix's codes, row-major; layout above)."""
    if lo is None or hi is None or not 1 <= hi - lo + 1 <= MAX_CTX_ALPHABET:
        raise CodecError(f"rans-ctx3 needs a value range of 1 to {MAX_CTX_ALPHABET} values, not {lo}..{hi}")
    buf = memoryview(blob).cast("B")
    head, pos = read_uvarints(buf, 0, 10)
    sb, e, k, r, c, t0, tail, mode, elo, ea = (int(v) for v in head)
    t0 = unzigzag(t0)
    elo = unzigzag(elo)
    if r * c != count or count == 0:
        raise CodecError(f"corrupt stream ({r} x {c} matrix for {count} symbols)")
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
    sides, res = ctx2_decode_body(buf, pos, count, params, lens, (sb, e, k, t0, tail, us), elo, elo + ea - 1)
    q = res.reshape(r, c).astype(np.int64) + elo
    at = r + c
    for n, shape, low in centres:
        q += (sides[at:at + n].astype(np.int64) + low).reshape(shape)
        at += n
    if q.min() < lo or q.max() > hi:
        raise CodecError(f"corrupt stream (codes outside the declared range {lo}..{hi})")
    return q.reshape(-1).astype(dtype)
