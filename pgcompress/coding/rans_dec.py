"""Decode side of the interleaved rANS coder: numpy only, plain top-level functions.

The submission decoder is assembled from this module's source, so it imports nothing but numpy
and ``CodecError`` (the generated file defines its own). Every length read from a blob is
checked against the bytes present before anything of that length is allocated.

Coder: 32-bit states, 16-bit renormalisation (state kept in [2^16, 2^32)), probabilities as
integer frequencies summing to 2^sb (sb <= 16). Symbol i of a stream belongs to lane i % N and is
decoded at step i // N, so one numpy operation advances all N lanes; at each step the lanes that
fall below 2^16 read one 16-bit word each, in lane order, from a single shared word stream.
"""

import numpy as np

from pgcompress.errors import CodecError

RANS_L = 1 << 16
MAX_LANES = 1 << 12
# Decode steps (one numpy pass over the lanes each) per stream: lanes >= count / MAX_STEPS, so a
# short blob cannot ask for a long Python-level loop (~5 us a step). Encoders use <= 4096.
MAX_STEPS = 1 << 16
# Every integer a blob stores (sizes, counts, frequencies) fits 42 bits; longer varints are corrupt.
MAX_VARINT_SHIFT = 42


def read_uvarint(buf, pos):
    """LEB128 unsigned integer at buf[pos:] -> (value, next pos)."""
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise CodecError("truncated stream (varint runs past the end)")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift >= MAX_VARINT_SHIFT:
            raise CodecError(f"corrupt stream (varint longer than {MAX_VARINT_SHIFT} bits)")


def read_uvarints(buf, pos, n):
    """n LEB128 integers -> (int64 array [n], next pos)."""
    if n > len(buf) - pos:  # each varint takes at least one byte
        raise CodecError(f"truncated stream ({n} table entries, {len(buf) - pos} bytes left)")
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i], pos = read_uvarint(buf, pos)
    return out, pos


def quantize_freqs(counts, sb):
    """counts: [A] >= 0 (not all 0) -> frequencies summing to 2^sb, >= 1 wherever counts > 0.

    Proportional rounding, then the deficit/excess is taken from the largest entries, which
    changes their code length the least. Integer arithmetic only, so it is deterministic.
    """
    counts = np.asarray(counts, dtype=np.int64)
    m = 1 << sb
    total = int(counts.sum())
    present = counts > 0
    if total == 0:
        raise CodecError("cannot build a frequency table for an empty distribution")
    if int(present.sum()) > m:
        raise CodecError(f"{int(present.sum())} distinct symbols do not fit a 2^{sb} frequency table")
    f = (counts * m + total // 2) // total
    f = np.where(present, np.maximum(f, 1), 0)
    diff = m - int(f.sum())
    order = np.argsort(-f, kind="stable")
    i = 0
    while diff != 0:
        j = order[i % order.size]
        if diff > 0:
            step = diff if f[j] > 0 else 0
            f[j] += step
            diff -= step
        elif f[j] > 1:
            step = min(-diff, int(f[j]) - 1)
            f[j] -= step
            diff += step
        i += 1
    return f


def rans_slot_tables(freq, sb):
    """freq: [K, A] int64 (each row sums to 2^sb) -> per-slot decode tables, each [K * 2^sb].

    sym[g]: the symbol of slot g; fr[g]: its frequency; bias[g]: slot - cumulative frequency.
    """
    k, a = freq.shape
    m = 1 << sb
    # entries are bounded before they are summed: K * A * 2^sb stays far below 2^63, and rows
    # summing to exactly 2^sb make np.repeat write exactly K * 2^sb slots
    if a == 0 or freq.min() < 0 or freq.max() > m or np.any(freq.sum(axis=1) != m):
        raise CodecError(f"corrupt frequency table (entries must lie in [0, {m}] and rows sum to {m})")
    flat = freq.reshape(-1)
    sym = np.repeat(np.tile(np.arange(a, dtype=np.int32), k), flat)
    start = np.repeat(np.cumsum(flat) - flat, flat)  # first slot of each slot's (context, symbol)
    # slot - cumulative frequency, both within the slot's context: g - start
    bias = np.arange(k * m, dtype=np.int64) - start
    fr = np.repeat(flat, flat)
    return sym, fr.astype(np.uint64), bias.astype(np.uint64)


def rans_run(words, states, count, sb, tables, ctx):
    """Decode ``count`` symbol indices.

    words: [W] uint16 shared renormalisation stream; states: [N] uint64 initial lane states;
    tables: rans_slot_tables(...); ctx: None (one table) or [count] int64 table index per symbol.
    -> [count] int32 symbol indices (0-based within the alphabet).
    """
    sym_t, fr_t, bias_t = tables
    n = states.size
    x = states.copy()
    mask = np.uint64((1 << sb) - 1)
    shift = np.uint64(sb)
    lim = np.uint64(RANS_L)
    s16 = np.uint64(16)
    w64 = words.astype(np.uint64)
    out = np.empty(count, dtype=np.int32)
    ctx_off = None if ctx is None else ctx * (1 << sb)
    pos = 0
    for start in range(0, count, n):
        k = min(n, count - start)
        xs = x if k == n else x[:k]
        g = (xs & mask).astype(np.int64)
        if ctx_off is not None:
            g += ctx_off[start:start + k]
        out[start:start + k] = sym_t[g]
        xs = fr_t[g] * (xs >> shift) + bias_t[g]
        need = xs < lim
        r = int(np.count_nonzero(need))
        if r:
            if pos + r > w64.size:
                raise CodecError("truncated or corrupt stream (ran out of renormalisation words)")
            xs[need] = (xs[need] << s16) | w64[pos:pos + r]
            pos += r
        x[:k] = xs
    if pos != w64.size or np.any(x != lim):
        raise CodecError("corrupt stream (final coder states or word count do not match)")
    return out


def rans_read_body(buf, pos, count):
    """Lane count, states and words after a codec's own header -> (states [N] uint64, words)."""
    n, pos = read_uvarint(buf, pos)
    nwords, pos = read_uvarint(buf, pos)
    if not 1 <= n <= min(MAX_LANES, max(count, 1)) or -(-count // n) > MAX_STEPS:
        raise CodecError(f"corrupt stream ({n} lanes for {count} symbols; at most {MAX_STEPS} a lane)")
    if len(buf) - pos != 4 * n + 2 * nwords:
        raise CodecError(f"corrupt or truncated stream ({len(buf) - pos} bytes left, "
                         f"{n} lanes and {nwords} words need {4 * n + 2 * nwords})")
    states = np.frombuffer(buf, dtype="<u4", count=n, offset=pos).astype(np.uint64)
    words = np.frombuffer(buf, dtype="<u2", count=nwords, offset=pos + 4 * n)
    if np.any(states < RANS_L):
        raise CodecError("corrupt stream (coder state below its lower bound)")
    return states, words


def rans0_decode(blob, dtype, count, lo, hi):
    """blob -> [count] array of ``dtype`` (values in [lo, hi])."""
    if lo is None or hi is None:
        if count:
            raise CodecError(f"rans cannot hold a {dtype} stream without a value range")
        lo = hi = 0
    buf = memoryview(blob).cast("B")
    sb, pos = read_uvarint(buf, 0)
    a, pos = read_uvarint(buf, pos)
    if not 1 <= sb <= 16 or a != hi - lo + 1:
        raise CodecError(f"corrupt stream (scale bits {sb}, alphabet {a}, expected {hi - lo + 1})")
    freq, pos = read_uvarints(buf, pos, a)
    states, words = rans_read_body(buf, pos, count)
    if count == 0:
        return np.zeros(0, dtype=dtype)
    tables = rans_slot_tables(freq.reshape(1, a), sb)
    return (rans_run(words, states, count, sb, tables, None) + lo).astype(dtype)
