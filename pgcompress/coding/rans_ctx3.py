"""``rans-ctx3``: rans-ctx2 with integer row and column centres (layout in ctx3_dec).

The encoder fits the centres as rounded means (columns first, then rows of what is left, then
columns again), ranks the matrix with no centres, with either kind and with both by the model's
ideal size (centre indices and header included) at one width quantization, and fits the winner
as rans-ctx2 fits a matrix. A matrix whose rounded means are all zero is fitted once, as
rans-ctx2 would. With no centres a blob costs three header integers more than rans-ctx2's
(mode and residual range, ~5 B).
"""

from __future__ import annotations

import numpy as np

from pgcompress.coding.ctx2_dec import MAX_SIDE_ALPHABET, ctx2_side_tables
from pgcompress.coding.ctx3_dec import rans_ctx3_decode
from pgcompress.coding.ctx_dec import MAX_CTX_ALPHABET
from pgcompress.coding.rans_ctx import SCALE_BITS, zigzag
from pgcompress.coding.rans_ctx2 import Ctx2Model, RansCtx2Codec, _fit_side, _per_symbol, _uvarint_len, fit_model
from pgcompress.errors import CodecError
from pgcompress.registry import register_codec


def fit_centres(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """q: [R, C] codes -> integer row and column centres rc [R], cc [C] (rounded means)."""
    x = q.astype(np.float64)
    cc = np.round(x.mean(axis=0))
    rc = np.round((x - cc[None, :]).mean(axis=1))
    cc = np.round((x - rc[:, None]).mean(axis=0))
    return rc.astype(np.int64), cc.astype(np.int64)


def _size(model: Ctx2Model) -> float:
    return model.ideal_side + model.ideal_codes + sum(_uvarint_len(v) for v in model.head)


def _with_centres(q: np.ndarray, rc: np.ndarray | None, cc: np.ndarray | None,
                  width_steps: tuple[int, ...] | None = None) -> Ctx2Model | None:
    """rans-ctx2's model of the residual after the given centres, extended with the centre
    indices as side symbols and rans-ctx3's header; None if it cannot be coded."""
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
        base = fit_model(e, elo, ehi, width_steps)
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
        params.append([zigzag(low)] + _fit_side(idx))
        values.append(idx)
    # base.head: sb, e, K, R, C, z(t0), tail, u[0..K-1], then the two width tables
    head = base.head[:7] + [mode, zigzag(elo), ehi - elo + 1] + base.head[7:] + [v for p in params for v in p]
    n_side = r + c
    freq, cum = base.freq[:n_side], base.cum[:n_side]
    ideal_side = base.ideal_side
    if values:
        tables = ctx2_side_tables([p[1:] for p in params], SCALE_BITS)
        which = np.repeat(np.arange(len(values)), [v.size for v in values])
        f, cu = _per_symbol(tables, which, np.concatenate(values))
        freq, cum = np.concatenate([freq, f]), np.concatenate([cum, cu])
        ideal_side += float(-np.log2(f / 2.0 ** SCALE_BITS).sum() / 8)
        n_side += f.size
    return Ctx2Model(head, np.concatenate([freq, base.freq[r + c:]]), np.concatenate([cum, base.cum[r + c:]]),
                     [n_side, q.size], ideal_side, base.ideal_codes)


def fit_model3(q: np.ndarray) -> Ctx2Model:
    """q: [R, C] integer codes -> the smallest of: no centres, row centres, column centres, both."""
    rc, cc = fit_centres(q)
    choices = [(None, None)]
    if cc.any():
        choices.append((None, np.round(q.mean(axis=0)).astype(np.int64)))
    if rc.any() or cc.any():
        choices.append((np.round(q.mean(axis=1)).astype(np.int64), None))
        choices.append((rc, cc))
    if len(choices) > 1:  # ranked at one width step (4 an octave, rans-ctx's), the winner refitted fully
        quick = [(m, ch) for ch in choices if (m := _with_centres(q, *ch, width_steps=(4,))) is not None]
        choices = [min(quick, key=lambda t: _size(t[0]))[1]] if quick else []
    best = _with_centres(q, *choices[0]) if choices else None
    if best is None:
        raise CodecError("rans-ctx3 cannot code this matrix (its value range is too wide)")
    return best


class RansCtx3Codec(RansCtx2Codec):
    """rans-ctx2's lanes and blob writer; the model adds centres (fit_model3)."""

    name = "rans-ctx3"
    decode_fn = staticmethod(rans_ctx3_decode)

    def fit(self, q: np.ndarray, lo: int, hi: int) -> Ctx2Model:
        return fit_model3(q)


register_codec(RansCtx3Codec())
