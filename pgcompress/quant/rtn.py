"""Round-to-nearest on the shared grid, with a clip rule per family:
``int{N}-rtn`` (row absmax), ``int{N}-clip`` (per-row MSE clip search, "GPTQ-lite"),
``int{N}-sdclip`` (k * std(row)), ``int{N}-pct`` (percentile of |row|). Grammar: ``intn.py``.

Each row of the grid's view (a row, or a group of a row) is quantized independently, so the same
function serves pack and QAT's fake-quant (``qparams_for``).
"""

from __future__ import annotations

import torch

from pgcompress.quant import clipping
from pgcompress.quant import grid as G
from pgcompress.quant.base import QuantContext, TensorKind
from pgcompress.quant.intn import GridMethod, MethodName, register_family
from pgcompress.registry import register_candidates


def qparams_for(spec: MethodName, rows: torch.Tensor) -> tuple[G.QParams, dict]:
    """rows [R, L] (the grid view) -> qparams and the params worth recording (e.g. the chosen k)."""
    grid = spec.grid
    if spec.algo == "rtn":
        return clipping.absmax_qparams(rows, grid), {}
    if spec.algo == "clip":
        return clipping.mse_qparams(rows, grid), {}
    if spec.algo == "pct":
        return clipping.percentile_qparams(rows, grid, spec.pct), {"pct": spec.pct}
    if spec.algo == "sdclip":
        k = clipping.sdclip_search_k(rows, grid) if spec.k_auto else (spec.k or clipping.SDCLIP_K[spec.bits])
        return clipping.sdclip_qparams(rows, grid, k), {"k": k}
    raise ValueError(f"not an RTN family: {spec.algo}")


def fake_quant_matrix(spec: MethodName, W: torch.Tensor) -> torch.Tensor:
    """W [out, in] -> the fp32 values pack + unpack reconstruct (no LQER)."""
    rows = G.to_rows(W.float(), spec.group)
    qp, _ = qparams_for(spec, rows)
    return G.fake_quantize_rows(rows, qp, spec.grid).reshape(W.shape)


class RTN(GridMethod):
    def row_qparams(self, rows: torch.Tensor) -> tuple[G.QParams, dict]:
        return qparams_for(self.spec, rows)

    @property
    def absmax_rows(self) -> bool:
        return self.spec.algo == "rtn"

    def quantize_matrix(self, name: str, W: torch.Tensor, ctx: QuantContext):
        rows = G.to_rows(W, self.spec.group)  # [R, L]
        qp, extra = self.row_qparams(rows)
        return G.quantize_rows(rows, qp, self.grid).reshape(W.shape), qp, extra


GROUP_CANDIDATE = 64


def rtn_candidates(kind: TensorKind) -> list[str]:
    """Budget-solver candidates that need no calibration: absmax RTN and SDClip with k searched, and
    SDClip over groups of 64 columns at 2-4 bits, where one scale per row costs the most.
    Not offered where the tensor has a Hessian: GPTQ's error there is 0.02-0.5x RTN's at the same
    bits (bench/results/gptq_time.md) for ~1% more bytes, so they would only cost solver time."""
    if not kind.is_matrix or kind.has_hessian:
        return []
    names = [f"int{b}-{algo}" for b in range(2, 9) for algo in ("rtn", "sdclip-kauto")]
    if kind.shape[-1] % GROUP_CANDIDATE == 0 and kind.shape[-1] > GROUP_CANDIDATE:
        names += [f"int{b}-sdclip-kauto-g{GROUP_CANDIDATE}" for b in (2, 3, 4)]  # one scale per 64 columns
    return names


register_candidates(rtn_candidates)
_MODS = "mods: -g{32..256} -asym -bf16 +lqer[-rR][-fF]"
register_family("rtn", RTN, f"round to nearest, clip = row absmax ({_MODS})")
register_family("clip", RTN, f"round to nearest, per-row MSE-optimal clip search, 'GPTQ-lite' ({_MODS})")
register_family("sdclip", RTN, "round to nearest, clip = k*std(row); -kK sets k (default 12.85 at int6, "
                               f"20 at int8), -kauto searches it ({_MODS})")
register_family("pct", RTN, f"round to nearest, clip = p-th percentile of |row|; -pP (default 99.9) ({_MODS})")
