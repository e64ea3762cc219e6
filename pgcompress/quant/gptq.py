"""``int{N}-gptq``: full-Hessian GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training
Quantization for Generative Pre-trained Transformers") on the shared grid.

Columns are quantized one at a time in act-order (descending diag(H)); each column's rounding
error is spread over the not-yet-quantized columns through the upper Cholesky factor of H^-1,
within blocks of 128 columns, with the lazy batch update to the columns after the block (and, inside
a block, after each sub-block of 16 columns). H is damped by 1% of its mean diagonal. The grid's
qparams are fixed before the pass ("static groups"), from the original W, so codes and stored
scales agree whatever the column order.

Hessian-aware clip: each row's clip is chosen among fractions of its absmax by running GPTQ for
every candidate at once (the rows are independent given H) and keeping, per row, the candidate
with the least output error (W - W_hat) H (W - W_hat)^T. ``-kK`` uses an SDClip grid instead.
A method name means what it says: without a Hessian for a tensor, GPTQ is an error, never a
silent RTN artifact labelled ``gptq``. N-D weight banks (``[slices, out, in]``, one linear map per
slice) are quantized slice by slice, each with its own Hessian (calibration keys ``name[i]``).
"""

from __future__ import annotations

import torch

from pgcompress.errors import MethodError
from pgcompress.quant import clipping
from pgcompress.quant import grid as G
from pgcompress.quant.base import QuantContext, TensorKind
from pgcompress.quant.intn import GridMethod, register_family
from pgcompress.registry import register_candidates

CLIP_ALPHAS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7)
SUBBLOCK = 16  # columns updated one by one before their errors are applied as a matmul


class GPTQ:
    """GPTQ for one weight. W: [out, in], H: [in, in] (sum of x x^T), grid with static qparams."""

    def __init__(self, W: torch.Tensor, H: torch.Tensor, grid: G.Grid, blocksize: int = 128,
                 percdamp: float = 0.01, actorder: bool = True):
        if H.shape != (W.shape[1], W.shape[1]):
            raise MethodError(f"Hessian {tuple(H.shape)} does not match a weight with {W.shape[1]} inputs")
        self.W, self.H, self.grid = W, H, grid
        self.blocksize, self.percdamp, self.actorder = blocksize, percdamp, actorder

    def hinv_upper(self, H: torch.Tensor) -> torch.Tensor:
        """Upper Cholesky factor of (H + damp I)^-1, raising the damping if H is not positive definite."""
        damp = self.percdamp * float(H.diagonal().mean())
        for _ in range(6):
            Hd = H.clone()
            Hd.diagonal().add_(damp)
            L, info = torch.linalg.cholesky_ex(Hd)
            if int(info) == 0:
                Hinv = torch.cholesky_inverse(L)
                U, info = torch.linalg.cholesky_ex(Hinv, upper=True)
                if int(info) == 0:
                    return U
            damp = damp * 10 if damp > 0 else 1e-6
        raise MethodError("Hessian is not positive definite even with heavy damping")

    def quantize(self, scale: torch.Tensor, zero: torch.Tensor | None) -> torch.Tensor:
        """scale/zero: [out, groups] (groups = 1 per row) -> codes [out, in] int8."""
        scale = scale.to(self.W.dtype).T.contiguous()  # [groups, out]
        zero = None if zero is None else zero.T.contiguous()
        n = self.W.shape[1]
        group_of = (torch.arange(n, device=self.W.device) // self.grid.group_size if self.grid.group_size
                    else torch.zeros(n, dtype=torch.long, device=self.W.device))

        def on_grid(col: int, w: torch.Tensor, u: float):
            g = int(group_of[col])
            z = None if zero is None else zero[g]
            q = G.quantize(w, scale[g], z, self.grid)
            return q, G.dequantize(q, scale[g], z).to(w.dtype)

        return self.run(on_grid).to(torch.int8)

    def order(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(perm, U): the quantization order (act-order: descending diag(H)) and the upper Cholesky
        factor of the damped H^-1 in that order. U[i, i]^-2 is what column perm[i]'s rounding error
        weighs in tr(E H E^T) once the columns before it are fixed."""
        H = self.H.to(self.W.dtype).clone()
        n = H.shape[0]
        dead = H.diagonal() == 0  # inputs never active in calibration: no error propagation through them
        H[dead, dead] = 1
        perm = torch.argsort(H.diagonal(), descending=True, stable=True) if self.actorder else torch.arange(n, device=H.device)
        return perm, self.hinv_upper(H[perm][:, perm])

    def run(self, quantize_column, perm_U=None) -> torch.Tensor:
        """The successive-cancellation pass: ``quantize_column(col, w [out], U_ii) -> (codes [out],
        w_hat [out])`` rounds column ``col`` (an index into W) after the errors of the columns before
        it in the order were fed back; returns the codes [out, in] in W's column order, in the
        codes' dtype. perm_U: a precomputed ``order()``."""
        perm, Hinv = perm_U if perm_U is not None else self.order()
        n = self.W.shape[1]
        # Work on W^T [in, out] so that a column of W is a contiguous row.
        Wt = self.W[:, perm].T.contiguous()
        Qt = None  # codes, in perm order
        for i1 in range(0, n, self.blocksize):
            i2 = min(i1 + self.blocksize, n)
            W1 = Wt[i1:i2].clone()  # [b, out]
            Err1 = torch.zeros_like(W1)
            Hinv1 = Hinv[i1:i2, i1:i2]
            # columns one at a time inside sub-blocks of SUBBLOCK; each sub-block's errors reach the
            # rest of the block in one matmul (the same update, far less memory traffic than rank-1s)
            for s1 in range(0, i2 - i1, SUBBLOCK):
                s2 = min(s1 + SUBBLOCK, i2 - i1)
                for i in range(s1, s2):
                    w = W1[i]
                    q, w_hat = quantize_column(int(perm[i1 + i]), w, float(Hinv1[i, i]))
                    if Qt is None:
                        Qt = torch.zeros((n, w.numel()), dtype=q.dtype, device=w.device)
                    Qt[i1 + i] = q
                    err = (w - w_hat) / Hinv1[i, i]
                    W1[i:s2] -= Hinv1[i, i:s2, None] * err[None, :]
                    Err1[i] = err
                W1[s2:] -= Hinv1[s1:s2, s2:].T @ Err1[s1:s2]
            Wt[i2:] -= Hinv[i1:i2, i2:].T @ Err1
        return Qt.T[:, torch.argsort(perm)]


def hessian_error(W: torch.Tensor, W_hat: torch.Tensor, H: torch.Tensor,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Per-row output error diag((W - W_hat) H (W - W_hat)^T): [out], computed in ``dtype``."""
    D = (W - W_hat).to(dtype)
    return ((D @ H.to(dtype)) * D).sum(dim=1)


def _qparams(W: torch.Tensor, grid: G.Grid, alpha: float | None, k: float | None) -> G.QParams:
    rows = G.to_rows(W, grid.group_size)
    if k is not None:
        return clipping.sdclip_qparams(rows, grid, k)
    return clipping.scaled_qparams(rows, grid, alpha)


def _as_matrix(qp: G.QParams, out: int):
    return qp.scale.reshape(out, -1), None if qp.zero is None else qp.zero.reshape(out, -1)


def gptq_best_clip(W: torch.Tensor, H: torch.Tensor, grid: G.Grid, k: float | None = None,
                   alphas=CLIP_ALPHAS, **gptq_kw) -> tuple[torch.Tensor, G.QParams, dict]:
    """W [out, in] fp32 -> (codes, qparams over the grid view, extra params)."""
    out = W.shape[0]
    cands = [(None, k)] if k is not None else [(a, None) for a in alphas]
    qps = [_qparams(W, grid, a, kk) for a, kk in cands]
    # every candidate's rows stacked: one GPTQ pass, rows are independent given H
    scale = torch.cat([_as_matrix(qp, out)[0] for qp in qps])
    zero = None if grid.symmetric else torch.cat([_as_matrix(qp, out)[1] for qp in qps])
    codes = GPTQ(W.repeat(len(cands), 1), H, grid, **gptq_kw).quantize(scale, zero)
    W_hat = G.dequantize(G.to_rows(codes, grid.group_size),
                         scale.reshape(-1, 1), None if zero is None else zero.reshape(-1, 1)).reshape(codes.shape)
    # fp32 is enough to rank the candidates (errors 1e-6 apart relative to each other are a tie in
    # effect) and twice as fast as fp64 on these [7 x out, in] products
    err = hessian_error(W.repeat(len(cands), 1), W_hat, H, torch.float32).reshape(len(cands), out)  # [C, out]
    best = err.argmin(dim=0)  # first (largest alpha) on ties
    rows = torch.arange(out, device=W.device)
    codes = codes.reshape(len(cands), out, -1)[best, rows]
    scale = scale.reshape(len(cands), out, -1)[best, rows].reshape(-1)
    zero = None if zero is None else zero.reshape(len(cands), out, -1)[best, rows].reshape(-1)
    extra = {"k": k} if k is not None else {}
    return codes, G.QParams(scale, zero), extra


def slice_hessians(name: str, hessians: dict[str, torch.Tensor], rows: int) -> list[torch.Tensor] | None:
    """Per-slice Hessians of an N-D weight bank (keys ``name[0]``, ``name[1]``, ...), or None when
    the calibration has none for it. Every slice must have one, with the bank's rows split evenly."""
    keys = [k for k in hessians if k.startswith(name + "[")]
    if not keys:
        return None
    n = len(keys)
    missing = [i for i in range(n) if f"{name}[{i}]" not in hessians]
    if missing or rows % n:
        raise MethodError(f"tensor {name!r}: calibration saw {n} of its slices but not slice {missing[:1]} "
                          f"or its {rows} rows do not split into {n} slices; exclude it from GPTQ "
                          f"(--method '...,{name}=int6-sdclip-kauto')")
    return [hessians[f"{name}[{i}]"] for i in range(n)]


class GPTQMethod(GridMethod):
    needs_hessians = True

    def quantize_matrix(self, name: str, W: torch.Tensor, ctx: QuantContext):
        grid = self.spec.grid
        H = ctx.hessians.get(name)
        if H is not None:
            return _on_cpu(gptq_best_clip(W.to(ctx.device), H.to(ctx.device, torch.float32), grid, self.spec.k))
        slices = slice_hessians(name, ctx.hessians, W.shape[0])
        if slices is None:
            what = (f"the calibration has no Hessian for {name!r} (it is not the weight of a linear map "
                    f"the model ran); give it another method, e.g. --method '...,{name}=int6-sdclip-kauto'"
                    if ctx.hessians else
                    "GPTQ needs calibration: pass --calib-shards GLOB or --calib-selfgen N, "
                    "or use an RTN method (int6-sdclip-kauto, int6-clip)")
            raise MethodError(f"{self.name}: {what}")
        step = W.shape[0] // len(slices)
        parts = [_on_cpu(gptq_best_clip(W[i * step:(i + 1) * step].to(ctx.device), Hs.to(ctx.device, torch.float32),
                                        grid, self.spec.k)) for i, Hs in enumerate(slices)]
        codes = torch.cat([p[0] for p in parts])
        zero = None if grid.symmetric else torch.cat([p[1].zero for p in parts])
        return codes, G.QParams(torch.cat([p[1].scale for p in parts]), zero), parts[0][2]


def _on_cpu(result):
    codes, qp, extra = result
    zero = None if qp.zero is None else qp.zero.cpu()
    return codes.cpu(), G.QParams(qp.scale.cpu(), zero), extra


def gptq_candidates(kind: TensorKind) -> list[str]:
    """Budget-solver candidates: every bit width, and LQER (rank 4) on the widths up to 6 (it reuses
    the GPTQ codes, so it costs no GPTQ run). LQER rank 16 at 2-4 bits and 64-column groups at 2-3
    bits were candidates too: on the shared checkpoint the proxy preferred them where chosen, but the
    measured val_bpb was worse with rank 16 at 6-12 MB and with groups at 4 MB (the one budget that
    chose them), and the groups cost two more GPTQ runs per matrix
    (bench/results/budget_candidates.md); they stay methods a user can ask for."""
    if not (kind.is_matrix and kind.has_hessian):
        return []
    return [f"int{b}-gptq" for b in range(2, 9)] + [f"int{b}-gptq+lqer" for b in range(2, 7)]


register_candidates(gptq_candidates)
register_family("gptq", GPTQMethod,
                "full-Hessian GPTQ (act-order, block 128, 1% damping), Hessian-aware clip choice; -kK: "
                "SDClip grid; needs calibration (mods: -g{32..256} -asym -bf16 +lqer[-rR][-fF])")
