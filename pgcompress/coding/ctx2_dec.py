"""Decode side of ``rans-ctx2``: rans-ctx's scale-context model with less coder overhead.

Same model as ``rans-ctx`` (ctx_dec): code q[r, c] is Student-t distributed with a width given by
the context t = clip(ia[r] + jb[c] - t0, 0, K-1) of its row and column log-width indices. What
changes is how the bits are laid out, which is where rans-ctx lost ~1% (bench/results/coders.md):

- One rANS body carries everything: the R + C side indices first (phase 1, two Student-t tables
  centred on their median, 4 integers each), then the R * C codes (phase 2), through the same N
  interleaved lanes. Symbol i of a phase goes to lane i % N at that phase's step i // N. No
  separate side blobs, so no extra lane states or frequency tables.
- The last ``tail`` steps of phase 2 need no renormalisation: the encoder codes them first,
  starting each lane from state 1 with no output, and starts the ordinary coder from
  L - 1 + (that state), as many steps as keep every lane below 2^32. The decoder, after the
  ordinary steps, subtracts L - 1 and decodes the tail from what is left, ending at exactly 1.
  The initial state L, which rANS otherwise spends on nothing, now carries the tail's symbols
  (coded poorly from so small a state: 0.75-1.0 B a lane saved, bench/results/coders.md).
- Decoded slot indices are kept and turned into symbols with one gather at the end, the slot
  tables are int32, and renormalisation works on the indices of the lanes that need a word:
  fewer and cheaper numpy calls per step, which is what bounds decode speed here (so a lane can
  carry more symbols for the same time).
"""

import numpy as np

from pgcompress.coding.ctx_dec import MAX_CONTEXTS, MAX_CTX_ALPHABET, check_ctx_params, ctx_index, ctx_table, \
    ctx_tables, unzigzag
from pgcompress.coding.rans_dec import RANS_L, rans_read_body, read_uvarints
from pgcompress.errors import CodecError

MAX_SIDE_ALPHABET = 1 << 12
MAX_TAIL_STEPS = 64


def ctx2_slot_tables(freq, sb):
    """freq: [K, A] int64 (rows sum to 2^sb, entries may be 0) -> per-slot tables, each [K * 2^sb]:
    sym, the slot's frequency and slot - cumulative frequency (all int32)."""
    k, a = freq.shape
    m = 1 << sb
    if a == 0 or freq.min() < 0 or freq.max() > m or np.any(freq.sum(axis=1) != m):
        raise CodecError(f"corrupt frequency table (entries must lie in [0, {m}] and rows sum to {m})")
    flat = freq.reshape(-1).astype(np.int32)
    sym = np.repeat(np.tile(np.arange(a, dtype=np.int32), k), flat)
    bias = np.arange(k * m, dtype=np.int32) - np.repeat(np.cumsum(flat, dtype=np.int32) - flat, flat)
    return sym, np.repeat(flat, flat), bias


def ctx2_lanes_run(x, words, pos, count, sb, tables, off, tail):
    """Decode ``count`` symbols through the lanes x ([N] int64, updated in place).

    words/pos: the shared renormalisation stream (int64) and the next word to read; off: [count]
    int64 context offsets (context * 2^sb); tail: None (no tail), or the steps at the end decoded
    without renormalisation, entered by subtracting L - 1 from every lane.
    -> (symbol indices [count] int32, next pos).
    """
    sym_t, fr_t, bias_t = tables
    n = x.size
    steps = -(-count // n)
    first_tail = steps + 1 if tail is None else steps - tail
    mask = (1 << sb) - 1
    slots = np.empty(count, dtype=np.int64)
    band = np.bitwise_and
    xs = x.copy()
    for s in range(steps):
        if s == first_tail:
            ctx2_enter_tail(xs)
        a = s * n
        k = min(n, count - a)
        if k < n:
            x[:] = xs
            xs = xs[:k]
        g = slots[a:a + k]
        band(xs, mask, out=g)
        g += off[a:a + k]
        xs = fr_t[g] * (xs >> sb) + bias_t[g]
        if s < first_tail:
            i = (xs < RANS_L).nonzero()[0]
            r = i.size
            if r:
                if pos + r > words.size:
                    raise CodecError("truncated or corrupt stream (ran out of renormalisation words)")
                xs[i] = (xs[i] << 16) | words[pos:pos + r]
                pos += r
    x[:xs.size] = xs
    if first_tail == steps:
        ctx2_enter_tail(x)
    return sym_t[slots], pos


def ctx2_enter_tail(x):
    x -= RANS_L - 1
    if np.any(x < 1):
        raise CodecError("corrupt stream (coder state below its lower bound)")


def ctx2_side_tables(params, sb):
    """params: [A, m, u, e] per side table (rows, columns, ...) -> [tables, max A] frequency tables
    (zero-padded)."""
    for a, m, u, e in params:
        if not 1 <= a <= MAX_SIDE_ALPHABET or m >= a or not 1 <= u <= 1 << 20 or e > 6:
            raise CodecError(f"corrupt stream (side table: {a} values, centre {m}, width {u}, tail {e})")
    out = np.zeros((len(params), max(p[0] for p in params)), dtype=np.int64)
    for i, (a, m, u, e) in enumerate(params):
        out[i, :a] = ctx_table(u, e, -m, a - 1 - m, sb)
    return out


def rans_ctx2_decode(blob, dtype, count, lo, hi):
    """blob -> [count] array of ``dtype`` (a matrix's codes, row-major; layout in rans_ctx2)."""
    if lo is None or hi is None or not 1 <= hi - lo + 1 <= MAX_CTX_ALPHABET:
        raise CodecError(f"rans-ctx2 needs a value range of 1 to {MAX_CTX_ALPHABET} values, not {lo}..{hi}")
    buf = memoryview(blob).cast("B")
    head, pos = read_uvarints(buf, 0, 7)
    sb, e, k, r, c, t0, tail = (int(v) for v in head)
    t0 = unzigzag(t0)
    if r * c != count or count == 0:
        raise CodecError(f"corrupt stream ({r} x {c} matrix for {count} symbols)")
    us, pos = read_uvarints(buf, pos, k) if k <= MAX_CONTEXTS else (None, pos)
    check_ctx_params(e, k, us, sb)
    side, pos = read_uvarints(buf, pos, 8)
    _, codes = ctx2_decode_body(buf, pos, count, [side[:4].tolist(), side[4:].tolist()], [r, c],
                                (sb, e, k, t0, tail, us), lo, hi)
    return (codes + lo).astype(dtype)


def ctx2_decode_body(buf, pos, count, side_params, side_lens, model, vlo, vhi):
    """The rANS body at ``pos``: side indices (phase 1: side_lens[i] symbols of the table
    side_params[i]; the first two are the row and column widths), then ``count`` code indices
    (phase 2: values vlo..vhi, contexts from those widths). model: (sb, e, K, t0, tail, u).
    -> (side indices [sum(side_lens)], code indices [count]), both int32."""
    sb, e, k, t0, tail, us = model
    r, c = side_lens[0], side_lens[1]
    side_freq = ctx2_side_tables(side_params, sb)
    states, words = rans_read_body(buf, pos, count)
    if tail > min(MAX_TAIL_STEPS, -(-count // states.size)):
        raise CodecError(f"corrupt stream ({tail} tail steps)")
    x = states.astype(np.int64)
    words = words.astype(np.int64)
    m = 1 << sb
    side_off = np.repeat(np.arange(len(side_lens), dtype=np.int64) * m, side_lens)
    sides, pos = ctx2_lanes_run(x, words, 0, sum(side_lens), sb, ctx2_slot_tables(side_freq, sb), side_off, None)
    off = ctx_index(sides[:r], sides[r:r + c], t0, k) * m
    codes, pos = ctx2_lanes_run(x, words, pos, count, sb,
                                ctx2_slot_tables(ctx_tables(us, e, vlo, vhi, sb), sb), off, tail)
    if pos != words.size or np.any(x != 1):
        raise CodecError("corrupt stream (final coder states or word count do not match)")
    return sides, codes
