"""The scale-context model of quantized weight matrices: what the probabilities of ``rans-ctx2`` are.

Model: code q[r, c] of a weight matrix is rc[r] + cc[c] + e[r, c], with integer row and column
centres (zero unless the encoder finds offsets) and a residual e drawn from a symmetric,
bell-shaped distribution whose width depends on its row (output unit) and column (input feature):
sigma[r, c] ~ a[r] * b[c]. a and b are stored as integer log2 indices ia, jb; the context of an
element is t = clip(ia[r] + jb[c] - t0, 0, K-1), and context t codes with the table of

    p_t(v) ~ (1 + v^2 / (nu * s_t^2)) ^ -(2^e),   nu = 2^(e+1) - 1   (a Student-t; large e ~ Gaussian)

over the whole residual range (every value keeps frequency >= 1, so any stream decodes), s_t = u_t / 16
with integers u_t fitted by the encoder. The side symbols (ia, jb, and the centres' indices) are
coded with one such table each, centred on an integer m. Tables are computed with +, *, / only
(IEEE-exact everywhere), so encoder and decoder build bit-identical integer tables.

Why centres: a briefly trained model keeps per-input-feature offsets in its first layers (Adam's
early updates share a sign down a column) and per-output offsets in zero-initialised projections;
on an 11-layer model trained 400 steps, taking integer means out cut the codes' entropy by 2-3%
(bench/results/coders.md).

The first half (tables) is what a decoder needs: plain numpy functions. The second half fits a
model to a matrix (encoder only); ``model_bytes`` is its ideal coded size, which the codec uses to
pick among fits and a rate estimate can use without coding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pgcompress.coding.rans_core import quantize_freqs, symbol_freqs, uvarint_len, zigzag
from pgcompress.errors import CodecError

SIGMA_UNIT = 16.0
MAX_CONTEXTS = 64
MAX_TAIL_EXP = 6
MAX_CTX_ALPHABET = 1 << 12  # K tables of hi - lo + 1 entries are built before decoding
MAX_SIDE_ALPHABET = 1 << 12
SCALE_BITS = 15
GRID_POINTS = 41  # candidate widths per context the encoder's fit tries


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


def side_tables(params, sb):
    """params: [A, m, u, e] per side table (rows, columns, ...) -> [tables, max A] frequency tables
    (zero-padded)."""
    for a, m, u, e in params:
        if not 1 <= a <= MAX_SIDE_ALPHABET or m >= a or not 1 <= u <= 1 << 20 or e > 6:
            raise CodecError(f"corrupt stream (side table: {a} values, centre {m}, width {u}, tail {e})")
    out = np.zeros((len(params), max(p[0] for p in params)), dtype=np.int64)
    for i, (a, m, u, e) in enumerate(params):
        out[i, :a] = ctx_table(u, e, -m, a - 1 - m, sb)
    return out


# Steps per octave tried for the row/column log-widths; each matrix keeps the one of least ideal
# size. The decoder only sees the integer indices, so this costs nothing to decode.
WIDTH_STEPS = (3, 4, 5, 6, 8)
# Centre choices are ranked at this one width quantization, and the winner refitted at all of them.
RANK_STEPS = (4,)


@dataclass
class CtxModel:
    """A fitted model: the blob's header integers, and its symbols as (tables, table per symbol,
    symbol) parts in decode order, turned into every symbol's table entry only when it is coded
    (``symbols``): a fit that loses, or a rate estimate, never pays for the per-symbol gather.

    head: sb, e | mode << 3, K, R, C, z(t0), tail (0 until coded), [z(elo), EA when mode != 0],
      u[0..K-1], A m u e for row widths then column widths, then z(min) A m u e per centre vector;
    parts: side tables then the codes' context tables; phases: the two phases' symbol counts
    (side symbols, then codes); ideal_side/ideal_codes: sum of -log2(f / 2^sb) in bytes.
    """

    head: list[int]
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    phases: list[int]
    ideal_side: float
    ideal_codes: float

    def symbols(self) -> tuple[np.ndarray, np.ndarray]:
        """(frequency, cumulative frequency) of every symbol in decode order: what lanes_encode takes."""
        pairs = [symbol_freqs(tables, which, values) for tables, which, values in self.parts]
        return np.concatenate([f for f, _ in pairs]), np.concatenate([c for _, c in pairs])


def _ideal(tables: np.ndarray, which: np.ndarray, values: np.ndarray) -> float:
    """sum of -log2(f / 2^sb) over the symbols, in bytes (a few side symbols: gathered)."""
    return float(-np.log2(symbol_freqs(tables, which, values)[0] / 2.0 ** SCALE_BITS).sum() / 8)


def _ideal_hist(tables: np.ndarray, hist: np.ndarray) -> float:
    """The same sum from the symbols' histogram per table: [K, A] counts against [K, A] tables."""
    used = hist > 0
    return float((hist[used] * -np.log2(tables[used] / 2.0 ** SCALE_BITS)).sum() / 8)


def model_bytes(model: CtxModel) -> float:
    """Ideal coded size of a model's blob: symbols at -log2 p, header integers at their length."""
    return model.ideal_side + model.ideal_codes + sum(uvarint_len(v) for v in model.head)


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


def log_widths(q: np.ndarray, steps: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """q: [R, C] codes -> integer log2 widths (``steps`` per octave, min 0) of rows and columns."""
    a, b = rank1_widths(q)
    return _log_indices(a, steps), _log_indices(b, steps)


def _log_indices(w: np.ndarray, steps: int) -> np.ndarray:
    i = np.round(steps * np.log2(w)).astype(np.int64)
    return i - i.min()


def fit_widths(hist: np.ndarray, lo: int, hi: int, grid_points: int = GRID_POINTS) -> tuple[int, np.ndarray]:
    """hist: [K, A] counts per context -> (tail exponent e, widths u [K]) of least coded size.

    Fitted on the float model (a grid of ``grid_points`` widths from 1/2 to 2x each context's RMS);
    the integer tables the coder uses are built from the result, exactly as the decoder builds them.
    """
    v = np.arange(lo, hi + 1, dtype=np.float64)
    hist = hist.astype(np.float64)
    n = hist.sum(axis=1)
    rms = np.sqrt((hist * v * v).sum(axis=1) / np.maximum(n, 1))
    grid = np.exp(np.linspace(np.log(0.5), np.log(2.0), grid_points))  # x rms
    us = np.maximum(1, np.round(SIGMA_UNIT * np.maximum(rms, 0.3)[:, None] * grid[None, :]))  # [K, G]
    z = v[None, None, :] ** 2 / ((us / SIGMA_UNIT) ** 2)[:, :, None]  # [K, G, A]
    best_total, best = None, None
    for e in range(1, MAX_TAIL_EXP + 1):
        # in the log domain: -ln p(v) = 2^e ln(1 + v^2 / (nu s^2)) + ln Z, Z the sum over the range
        nl = np.log1p(z / float((2 << e) - 1)) * 2.0 ** e  # [K, G, A], unnormalised
        low = nl.min(axis=2, keepdims=True)
        ln_z = np.log(np.exp(low - nl).sum(axis=2)) - low[:, :, 0]  # [K, G]
        cost = (np.matmul(nl, hist[:, :, None])[:, :, 0] + n[:, None] * ln_z) / np.log(2.0)  # bits
        pick = cost.argmin(axis=1)
        total = cost[np.arange(len(us)), pick].sum()
        if best_total is None or total < best_total:
            best_total, best = total, (e, us[np.arange(len(us)), pick].astype(np.int64))
    return best


def fit_side(values: np.ndarray) -> list[int]:
    """values: [n] indices 0..A-1 -> [A, m, u, e] of the Student-t table that codes them smallest."""
    a = int(values.max()) + 1
    m = int(np.median(values))
    hist = np.bincount(values, minlength=a)[None, :]
    e, us = fit_widths(hist, -m, a - 1 - m)
    return [a, m, int(us[0]), int(e)]


def fit_centres(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """q: [R, C] codes -> integer row and column centres rc [R], cc [C] (rounded means)."""
    x = q.astype(np.float64)
    cc = np.round(x.mean(axis=0))
    rc = np.round((x - cc[None, :]).mean(axis=1))
    cc = np.round((x - rc[:, None]).mean(axis=0))
    return rc.astype(np.int64), cc.astype(np.int64)


def fit_widths_model(q: np.ndarray, lo: int, hi: int, width_steps: tuple[int, ...] | None = None,
                     grid_points: int = GRID_POINTS) -> CtxModel:
    """q: [R, C] codes in [lo, hi], no centres -> the model of least ideal size over the width
    quantizations ``width_steps`` (steps per octave; default WIDTH_STEPS); ``grid_points``: see
    ``fit_widths`` (fewer: a faster, slightly larger fit, for estimates)."""
    a, b = rank1_widths(q)
    best = None
    for steps in width_steps or WIDTH_STEPS:
        model = _fit_at(q, lo, hi, _log_indices(a, steps), _log_indices(b, steps), grid_points)
        size = model_bytes(model)
        if best is None or size < best[0]:
            best = (size, model)
    return best[1]


def _fit_at(q: np.ndarray, lo: int, hi: int, ia: np.ndarray, jb: np.ndarray,
            grid_points: int = GRID_POINTS) -> CtxModel:
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
    e, us = fit_widths(hist, lo, hi, grid_points)
    side = [fit_side(ia), fit_side(jb)]
    side_part = (side_tables(side, SCALE_BITS), np.repeat([0, 1], [r, c]), np.concatenate([ia, jb]))
    tables = ctx_tables(us, e, lo, hi, SCALE_BITS)
    head = [SCALE_BITS, e, k, r, c, zigzag(t0), 0, *us.tolist(), *side[0], *side[1]]
    return CtxModel(head, [side_part, (tables, ctx, idx)], [r + c, idx.size], _ideal(*side_part),
                    _ideal_hist(tables, hist))


def fit_centred_model(q: np.ndarray, rc: np.ndarray | None, cc: np.ndarray | None,
                      width_steps: tuple[int, ...] | None = None, grid_points: int = GRID_POINTS) -> CtxModel | None:
    """The widths model of the residual after the given centres (at least one), extended with the
    centre indices as side symbols and their header fields; None if it cannot be coded."""
    r, c = q.shape
    e = q.astype(np.int64)
    if rc is not None:
        e = e - rc[:, None]
    if cc is not None:
        e = e - cc[None, :]
    elo, ehi = int(e.min()), int(e.max())
    if ehi - elo + 1 > MAX_CTX_ALPHABET:
        return None
    try:
        base = fit_widths_model(e, elo, ehi, width_steps, grid_points)
    except CodecError:
        return None
    mode = (rc is not None) | ((cc is not None) << 1)
    params, values = [], []
    for v in (rc, cc):
        if v is None:
            continue
        low = int(v.min())
        idx = v - low
        if int(idx.max()) >= MAX_SIDE_ALPHABET:
            return None
        params.append([zigzag(low)] + fit_side(idx))
        values.append(idx)
    # base.head: sb, e, K, R, C, z(t0), tail, u[0..K-1], then the two width tables
    head = ([base.head[0], base.head[1] | mode << 3] + base.head[2:7] + [zigzag(elo), ehi - elo + 1]
            + base.head[7:] + [v for p in params for v in p])
    part = (side_tables([p[1:] for p in params], SCALE_BITS),
            np.repeat(np.arange(len(values)), [v.size for v in values]), np.concatenate(values))
    return CtxModel(head, [base.parts[0], part, *base.parts[1:]], [r + c + part[2].size, q.size],
                    base.ideal_side + _ideal(*part), base.ideal_codes)


def best_centres(q: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None] | None:
    """q: [R, C] codes -> (row centres or None, column centres or None) of least ideal size at
    RANK_STEPS among column means, row means and both (rounded); None when every rounded mean is 0."""
    rc, cc = fit_centres(q)
    choices = []
    if cc.any():
        choices.append((None, np.round(q.mean(axis=0)).astype(np.int64)))
    if rc.any() or cc.any():
        choices.append((np.round(q.mean(axis=1)).astype(np.int64), None))
        choices.append((rc, cc))
    ranked = [(model_bytes(m), ch) for ch in choices
              if (m := fit_centred_model(q, *ch, width_steps=RANK_STEPS)) is not None]
    return min(ranked, key=lambda t: t[0])[1] if ranked else None
