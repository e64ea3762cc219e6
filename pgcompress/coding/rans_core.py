"""The one rANS coder: interleaved lanes, slot tables, varints and frequency quantization.

Every entropy codec (``rans``, ``rans-ctx2``) codes through this module; a new probability model
needs no new coder. Decode functions are plain numpy functions raising ``CodecError``: the
submission decoder copies their source (every length read from a blob is checked against the bytes
present before anything of that length is allocated). The encode side is numpy too, vectorised
over lanes, and never reaches a submission.

Coder: 32-bit states kept in [2^16, 2^32) with 16-bit renormalisation, probabilities as integer
frequencies summing to 2^sb (sb <= 16). A stream is a run of phases (e.g. side information, then
codes); symbol i of a phase goes to lane i % N and is decoded at that phase's step i // N, so one
numpy operation advances all N lanes, and the lanes that fall below 2^16 read one 16-bit word each,
in lane order, from one shared word stream. Body layout: uvarint N, uvarint W, N uint32 final
states, W uint16 words (little-endian).

The tail: rANS starts every lane at state L = 2^16, which carries nothing. The encoder may instead
code the last ``tail`` steps first, from state 1 and without renormalisation, as many steps as keep
every lane's state d with L - 1 + d < 2^32, and start the ordinary coder from L - 1 + d. The
decoder, after the ordinary steps, subtracts L - 1 and decodes the tail from what is left, ending at
exactly 1 (0.75-1 B a lane saved, bench/results/coders.md). tail = 0 is the plain coder: lanes
start from L and end at L.
"""

import numpy as np

from pgcompress.errors import CodecError

RANS_L = 1 << 16
MAX_LANES = 1 << 12
# Decode steps (one numpy pass over the lanes each) per stream: lanes >= count / MAX_STEPS, so a
# short blob cannot ask for a long Python-level loop (~5 us a step). Encoders use <= 4096.
MAX_STEPS = 1 << 16
MAX_TAIL_STEPS = 64
MAX_ALPHABET = 1 << 16
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


def unzigzag(z):
    return z >> 1 if z % 2 == 0 else -((z + 1) >> 1)


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


def slot_tables(freq, sb):
    """freq: [K, A] int64 (rows sum to 2^sb, entries may be 0) -> per-slot decode tables, each
    [K * 2^sb] int32: the slot's symbol, its frequency, and slot - cumulative frequency."""
    k, a = freq.shape
    m = 1 << sb
    # entries are bounded before they are summed, and rows summing to exactly 2^sb make np.repeat
    # write exactly K * 2^sb slots
    if a == 0 or freq.min() < 0 or freq.max() > m or np.any(freq.sum(axis=1) != m):
        raise CodecError(f"corrupt frequency table (entries must lie in [0, {m}] and rows sum to {m})")
    flat = freq.reshape(-1).astype(np.int32)
    sym = np.repeat(np.tile(np.arange(a, dtype=np.int32), k), flat)
    bias = np.arange(k * m, dtype=np.int32) - np.repeat(np.cumsum(flat, dtype=np.int32) - flat, flat)
    return sym, np.repeat(flat, flat), bias


def read_body(buf, pos, count):
    """Lane count, word count, states and words after a codec's own header, for a stream of
    ``count`` symbols in its longest phase -> (states [N] int64, words [W] int64)."""
    n, pos = read_uvarint(buf, pos)
    nwords, pos = read_uvarint(buf, pos)
    if not 1 <= n <= min(MAX_LANES, max(count, 1)) or -(-count // n) > MAX_STEPS:
        raise CodecError(f"corrupt stream ({n} lanes for {count} symbols; at most {MAX_STEPS} a lane)")
    if len(buf) - pos != 4 * n + 2 * nwords:
        raise CodecError(f"corrupt or truncated stream ({len(buf) - pos} bytes left, "
                         f"{n} lanes and {nwords} words need {4 * n + 2 * nwords})")
    states = np.frombuffer(buf, dtype="<u4", count=n, offset=pos).astype(np.int64)
    words = np.frombuffer(buf, dtype="<u2", count=nwords, offset=pos + 4 * n).astype(np.int64)
    if np.any(states < RANS_L):
        raise CodecError("corrupt stream (coder state below its lower bound)")
    return states, words


def lanes_decode(x, words, pos, count, sb, tables, off, tail):
    """Decode one phase of ``count`` symbols through the lanes x ([N] int64, updated in place).

    words/pos: the shared renormalisation stream (int64) and the next word to read; tables:
    slot_tables(...); off: None (one table) or [count] int64 table offsets (table * 2^sb); tail:
    None (no tail: more phases follow), or the steps at the end decoded without renormalisation,
    entered by subtracting L - 1 from every lane. -> (symbol indices [count] int32, next pos).
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
            enter_tail(xs)
        a = s * n
        k = min(n, count - a)
        if k < n:
            x[:] = xs
            xs = xs[:k]
        g = slots[a:a + k]
        band(xs, mask, out=g)
        if off is not None:
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
        enter_tail(x)
    return sym_t[slots], pos


def enter_tail(x):
    x -= RANS_L - 1
    if np.any(x < 1):
        raise CodecError("corrupt stream (coder state below its lower bound)")


def check_end(x, words, pos):
    """After the last phase: every word read and every lane back at its start state."""
    if pos != words.size or np.any(x != 1):
        raise CodecError("corrupt stream (final coder states or word count do not match)")


def write_uvarint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError("uvarint of a negative number")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def uvarint_len(v: int) -> int:
    """Bytes write_uvarint takes for v >= 0."""
    return max(1, -(-int(v).bit_length() // 7))


def zigzag(x: int) -> int:
    return 2 * x if x >= 0 else -2 * x - 1


def symbol_stream_ok(info) -> bool:
    """Whether a stream (a base.StreamInfo) is integer symbols this coder can take: a value range of
    at most MAX_ALPHABET values and no more symbols than MAX_LANES lanes of MAX_STEPS."""
    return (info.lo is not None and info.dtype in ("int8", "int16", "uint8")
            and 0 < info.hi - info.lo + 1 <= MAX_ALPHABET and info.count <= MAX_LANES * MAX_STEPS)


def lanes_for(n: int, symbols_per_lane: int) -> int:
    """Lanes for a stream of n symbols: one per ``symbols_per_lane``, within [1, MAX_LANES], and
    enough that no lane takes more than MAX_STEPS steps."""
    return int(min(MAX_LANES, max(1, n // symbols_per_lane, -(-n // MAX_STEPS))))


def symbol_freqs(freq: np.ndarray, table: np.ndarray | None, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """freq: [K, A] tables; table: [n] table per symbol (None: table 0); idx: [n] symbols
    -> (frequency [n], cumulative frequency [n]) of each symbol, what lanes_encode takes."""
    a = freq.shape[1]
    g = idx.astype(np.int64) if table is None else table.astype(np.int64) * a + idx.astype(np.int64)
    cum = np.cumsum(freq, axis=1) - freq
    return freq.reshape(-1)[g], cum.reshape(-1)[g]


def lanes_encode(f_sym: np.ndarray, c_sym: np.ndarray, phases: list[int], lanes: int, sb: int,
                 max_tail: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Symbols of consecutive phases (frequency and cumulative frequency per symbol, concatenated
    in decode order; phase p's symbol i goes to lane i % lanes) -> (states [lanes] uint32,
    words [W] uint16 in decode order, tail steps <= max_tail, default MAX_TAIL_STEPS), the layout
    lanes_decode reads.

    Runs the lanes backwards, one numpy step per group of lanes, collecting each step's
    renormalisation words in lane order; the word stream is then reversed by step."""
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
    tail = 0
    limit = np.uint64((1 << 32) - RANS_L)
    max_tail = MAX_TAIL_STEPS if max_tail is None else max_tail
    while tail < min(max_tail, last_phase_steps):
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


def write_body(states: np.ndarray, words: np.ndarray) -> bytes:
    """The part read_body parses: lanes, word count, states, words."""
    out = bytearray()
    write_uvarint(out, states.size)
    write_uvarint(out, words.size)
    return bytes(out) + states.astype("<u4").tobytes() + words.astype("<u2").tobytes()
