"""Clip rules: each maps rows of a weight view [R, L] to a clip range per row, which
``grid.choose_qparams`` turns into qparams. Shared by the RTN family and GPTQ.

- absmax: the row's max |w| (asymmetric: its min and max) - nothing is clipped;
- mse: per row, the fraction alpha of the absmax range that minimises the (optionally
  column-weighted) squared error after quantization ("GPTQ-lite" clip search);
- sdclip: clip = k * std(row) (records: k = 12.85 at int6, 20 for an int8 embedding, 14 for an
  int7 one); with k large the clip rarely binds and k sets the step relative to the row's spread,
  trading error for code entropy;
- percentile: clip = the p-th percentile of |row|.
"""

from __future__ import annotations

import torch

from pgcompress.quant.grid import Grid, QParams, choose_qparams, fake_quantize_rows

# Default SDClip k per bit width. 6/7/8: the records' values (reference-protocol.md section 7).
# 5 and 4: the int6 record's step (12.85/31 = 0.41 std) carried over. 3 and 2: the MSE-optimal
# clip of a symmetric grid for a Gaussian row (measured numerically), as 0.41 std steps would clip
# at 1.2 std there.
SDCLIP_K = {2: 1.23, 3: 1.96, 4: 2.9, 5: 6.2, 6: 12.85, 7: 14.0, 8: 20.0}
SDCLIP_K_SEARCH = (2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 10.0, 12.85, 16.0, 20.0)
MSE_ALPHAS = torch.linspace(1.0, 0.3, 71).tolist()


def absmax_qparams(rows: torch.Tensor, grid: Grid) -> QParams:
    # rows: [R, L] -> qparams over [R]
    r = rows.float()
    if grid.symmetric:
        return choose_qparams(grid, r.abs().amax(dim=1))
    return choose_qparams(grid, r.amin(dim=1), r.amax(dim=1))


def scaled_qparams(rows: torch.Tensor, grid: Grid, alpha: torch.Tensor | float) -> QParams:
    """The absmax range shrunk by ``alpha`` (scalar or [R])."""
    r = rows.float()
    if grid.symmetric:
        return choose_qparams(grid, r.abs().amax(dim=1) * alpha)
    return choose_qparams(grid, r.amin(dim=1) * alpha, r.amax(dim=1) * alpha)


def row_error(rows: torch.Tensor, qp: QParams, grid: Grid, col_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Squared error per row after fake-quant: [R] fp32 (columns weighted by col_weight [L])."""
    d = (rows.float() - fake_quantize_rows(rows, qp, grid)).square()
    if col_weight is not None:
        d = d * col_weight.float()[None, :]
    return d.sum(dim=1)


def mse_qparams(rows: torch.Tensor, grid: Grid, col_weight: torch.Tensor | None = None,
                alphas: list[float] = MSE_ALPHAS) -> QParams:
    """Per row, the alpha in ``alphas`` with the least (weighted) squared error; ties keep the
    larger alpha (the earlier candidate)."""
    best_err = best_alpha = None
    for a in alphas:
        err = row_error(rows, scaled_qparams(rows, grid, a), grid, col_weight)
        if best_err is None:
            best_err, best_alpha = err, torch.full_like(err, a)
        else:
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_alpha = torch.where(better, torch.full_like(err, a), best_alpha)
    return scaled_qparams(rows, grid, best_alpha)


def sdclip_qparams(rows: torch.Tensor, grid: Grid, k: float) -> QParams:
    r = rows.float()
    std = r.std(dim=1, correction=0)
    if grid.symmetric:
        return choose_qparams(grid, k * std)
    mean = r.mean(dim=1)
    return choose_qparams(grid, mean - k * std, mean + k * std)


def sdclip_search_k(rows: torch.Tensor, grid: Grid, col_weight: torch.Tensor | None = None,
                    ks=SDCLIP_K_SEARCH) -> float:
    """One k for the whole tensor: the candidate with the least total (weighted) squared error."""
    errs = [float(row_error(rows, sdclip_qparams(rows, grid, k), grid, col_weight).sum()) for k in ks]
    return float(ks[min(range(len(ks)), key=errs.__getitem__)])


def percentile_qparams(rows: torch.Tensor, grid: Grid, pct: float) -> QParams:
    r = rows.float()
    q = pct / 100.0
    if grid.symmetric:
        return choose_qparams(grid, _row_quantile(r.abs(), q))
    return choose_qparams(grid, _row_quantile(r, 1.0 - q), _row_quantile(r, q))


def _row_quantile(r: torch.Tensor, q: float) -> torch.Tensor:
    # torch.quantile refuses inputs over 2^24 elements: go in row chunks.
    step = max(1, (1 << 24) // max(1, r.shape[1]))
    return torch.cat([torch.quantile(r[i:i + step], q, dim=1) for i in range(0, r.shape[0], step)])
