"""Decode side of ``rans-ctx``: the scale-context model for quantized weight matrices.

Model: code q[r, c] of a weight matrix is drawn from a symmetric, bell-shaped distribution whose
width depends on its row (output unit) and column (input feature): sigma[r, c] ~ a[r] * b[c].
The blob stores a[r], b[c] as integer log2 indices (STEPS per octave); the context of an element
is t = clip(ia[r] + jb[c] - t0, 0, K-1), and context t codes with the table of

    p_t(v) ~ (1 + v^2 / (nu * s_t^2)) ^ -(2^e),   nu = 2^(e+1) - 1   (a Student-t; large e ~ Gaussian)

over the whole value range [lo, hi] (every value keeps frequency >= 1, so any stream decodes).
s_t = u_t / 16 with the integers u_t fitted by the encoder. Tables are computed with +, *, /
only (IEEE-exact everywhere), so encoder and decoder build bit-identical integer tables.
"""

import numpy as np

from pgcompress.coding.rans_dec import (quantize_freqs, rans0_decode, rans_read_body, rans_run,
                                        rans_slot_tables, read_uvarint, read_uvarints)
from pgcompress.errors import CodecError

SIGMA_UNIT = 16.0
MAX_CONTEXTS = 64
MAX_TAIL_EXP = 6
MAX_CTX_ALPHABET = 1 << 12  # K tables of hi - lo + 1 entries are built before decoding


def ctx_table(u, e, lo, hi, sb):
    """Integer frequencies [hi - lo + 1] (sum 2^sb) of one context with width u / 16."""
    v = np.arange(lo, hi + 1, dtype=np.float64)
    nu = float((2 << e) - 1)
    s = u / SIGMA_UNIT
    p = 1.0 / (1.0 + (v * v) / (nu * s * s))
    for _ in range(e):
        p = p * p
    # pseudo-counts: a floor of 1 keeps every value codable; 2^32 resolution is far finer than 2^sb
    counts = np.floor(p * 4294967296.0).astype(np.int64) + 1
    return quantize_freqs(counts, sb)


def ctx_tables(us, e, lo, hi, sb):
    """[K, hi - lo + 1] tables for widths us[0..K-1]."""
    return np.stack([ctx_table(int(u), e, lo, hi, sb) for u in us])


def ctx_index(ia, jb, t0, k):
    """ia: [R] row indices, jb: [C] column indices -> [R * C] int64 contexts (row-major)."""
    t = ia.astype(np.int64)[:, None] + jb.astype(np.int64)[None, :] - t0
    return np.clip(t, 0, k - 1).reshape(-1)


def check_ctx_params(e, k, us, sb):
    if us is None or not 0 <= e <= MAX_TAIL_EXP or not 1 <= k <= MAX_CONTEXTS or not 10 <= sb <= 16:
        raise CodecError(f"corrupt stream (tail exponent {e}, {k} contexts, scale bits {sb})")
    if np.any(us < 1) or np.any(us > 1 << 20):
        raise CodecError("corrupt stream (context width out of range)")


def unzigzag(z):
    return z >> 1 if z % 2 == 0 else -((z + 1) >> 1)


def rans_ctx_decode(blob, dtype, count, lo, hi):
    """blob -> [count] array of ``dtype`` (a matrix's codes, row-major; layout in rans_ctx)."""
    if lo is None or hi is None or not 1 <= hi - lo + 1 <= MAX_CTX_ALPHABET:
        raise CodecError(f"rans-ctx needs a value range of 1 to {MAX_CTX_ALPHABET} values, not {lo}..{hi}")
    buf = memoryview(blob).cast("B")
    head = []
    pos = 0
    for _ in range(6):
        value, pos = read_uvarint(buf, pos)
        head.append(value)
    sb, e, k, r, c, t0 = head
    t0 = unzigzag(t0)
    if r * c != count or count == 0:
        raise CodecError(f"corrupt stream ({r} x {c} matrix for {count} symbols)")
    us, pos = read_uvarints(buf, pos, k) if k <= MAX_CONTEXTS else (None, pos)
    check_ctx_params(e, k, us, sb)
    sides = []
    for n in (r, c):
        n_vals, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        if size > len(buf) - pos or not 1 <= n_vals <= 1 << 15:
            raise CodecError("corrupt or truncated stream (side information)")
        sides.append(rans0_decode(buf[pos:pos + size], np.int64, n, 0, n_vals - 1))
        pos += size
    states, words = rans_read_body(buf, pos, count)
    freq = ctx_tables(us, e, lo, hi, sb)
    ctx = ctx_index(sides[0], sides[1], t0, k)
    return (rans_run(words, states, count, sb, rans_slot_tables(freq, sb), ctx) + lo).astype(dtype)
