"""The one integer grid: choose qparams, quantize, dequantize. Pack, unpack, QAT and the kernels'
references all call these functions, so a weight reconstructs to the same bits everywhere.

A ``Grid`` is b bits (2..8), symmetric or asymmetric, per row or per group of ``group_size``
consecutive input columns, with scales stored as fp16 or bf16.

- symmetric: codes in [-(2^(b-1) - 1), 2^(b-1) - 1] (int8-ref's +-127 convention, zero exact),
  ``w_hat = q * s``;
- asymmetric: codes in [-2^(b-1), 2^(b-1) - 1], an integer zero point z per row/group (so the
  range always holds 0), ``w_hat = (q - z) * s``.

Reproducibility rule: the scale is rounded to its stored dtype *first* and the codes are computed
against that stored scale (fp32 arithmetic: ``round(w / s_stored)``), so whatever recomputes the
codes from the same weights (QAT's fake-quant, a second pack) gets the same codes, and
dequantization is one exact integer subtraction and one fp32 multiply.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pgcompress.errors import MethodError

SCALE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
GROUP_SIZES = (32, 64, 128, 256)
_FP16_MAX = 65504.0


@dataclass(frozen=True)
class Grid:
    bits: int
    symmetric: bool = True
    group_size: int = 0  # 0: one scale per row
    scale_dtype: str = "fp16"

    def __post_init__(self):
        if not 2 <= self.bits <= 8:
            raise MethodError(f"grid bits must be 2..8, got {self.bits}")
        if self.group_size and self.group_size not in GROUP_SIZES:
            raise MethodError(f"group size must be one of {GROUP_SIZES} (or 0 = per row), got {self.group_size}")
        if self.scale_dtype not in SCALE_DTYPES:
            raise MethodError(f"scale dtype must be one of {sorted(SCALE_DTYPES)}, got {self.scale_dtype!r}")

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1)) + (1 if self.symmetric else 0)

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    @property
    def levels(self) -> int:
        return self.qmax - self.qmin  # steps between the extreme codes


@dataclass
class QParams:
    """Per row-of-the-view qparams: scale [R] fp32 (values exactly representable in the stored
    dtype), zero [R] int32 or None (symmetric)."""

    scale: torch.Tensor
    zero: torch.Tensor | None = None


def matrix_dims(shape) -> tuple[int, int]:
    """The [rows, cols] view of a tensor shape: 2-D as is; 1-D/0-D one row; N-D (weight banks such
    as ``qo_bank [2L, d, d]``) as every leading index a row of the last dim, so each slice's rows
    get their own scales. A plain function: the submission decoder copies it."""
    numel = 1
    for d in shape:
        numel *= int(d)
    if len(shape) <= 1:
        return 1, numel
    cols = int(shape[-1])
    return (numel // cols if cols else 0), cols


def as_matrix(w: torch.Tensor) -> torch.Tensor:
    """Any tensor -> its [rows, cols] view (``matrix_dims``)."""
    return w.reshape(matrix_dims(tuple(w.shape)))


def to_rows(W: torch.Tensor, group_size: int) -> torch.Tensor:
    """W: [out, in] -> [out * in/g, g] (each row of the view shares one scale); g=0: W itself."""
    if not group_size:
        return W
    out, cols = W.shape
    if cols % group_size:
        raise MethodError(f"input dim {cols} is not a multiple of the group size {group_size}; "
                          "use a per-row method (no -gNN) for this tensor")
    return W.reshape(out * (cols // group_size), group_size)


def store_scale(x: torch.Tensor, scale_dtype: str) -> torch.Tensor:
    """fp32 [R] -> fp32 values rounded (nearest-even) to the stored dtype; 0 and non-finite -> 1."""
    x = x.float()
    if scale_dtype == "fp16":
        x = x.clamp(max=_FP16_MAX)
    s = x.to(SCALE_DTYPES[scale_dtype]).float()
    # A zero scale (all-zero row, or underflow) would divide by zero; 1.0 maps the row to code 0
    # (an underflowed row's values are below the stored dtype's resolution anyway).
    return torch.where(s > 0, s, torch.ones_like(s))


def choose_qparams(grid: Grid, lo: torch.Tensor, hi: torch.Tensor | None = None) -> QParams:
    """Clip range per row of the view -> qparams.

    symmetric: ``lo`` is the clip (>= 0) and ``hi`` is unused; s = stored(clip / qmax).
    asymmetric: [lo, hi] is widened to hold 0; s = stored((hi - lo) / levels),
      z = clamp(qmin - round(lo / s), qmin, qmax).
    """
    if grid.symmetric:
        return QParams(store_scale(lo.float().abs() / grid.qmax, grid.scale_dtype))
    lo = torch.minimum(lo.float(), torch.zeros_like(lo, dtype=torch.float32))
    hi = torch.maximum(hi.float(), torch.zeros_like(hi, dtype=torch.float32))
    s = store_scale((hi - lo) / grid.levels, grid.scale_dtype)
    z = torch.clamp(grid.qmin - torch.round(lo / s), grid.qmin, grid.qmax).to(torch.int32)
    return QParams(s, z)


def quantize(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, grid: Grid) -> torch.Tensor:
    """Codes of x against broadcastable (stored) scale/zero -> same shape, x's float dtype holding
    integers (cast with ``.to(torch.int8)``). Used per row by RTN and per column by GPTQ."""
    q = torch.round(x / scale.to(x.dtype))
    if zero is not None:
        q = q + zero.to(x.dtype)
    return torch.clamp(q, grid.qmin, grid.qmax)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None) -> torch.Tensor:
    """Codes (any int or float dtype holding integers) and broadcastable qparams -> fp32.

    Codes go through int32 even when they arrive as floats: that turns a -0.0 from rounding into
    +0 code, so fake-quant and stored codes give the same bits."""
    q = q.to(torch.int32)
    if zero is not None:
        q = q - zero.to(torch.int32)
    return q.float() * scale.float()


def quantize_rows(rows: torch.Tensor, qp: QParams, grid: Grid) -> torch.Tensor:
    """rows: [R, L] float -> codes [R, L] int8."""
    zero = None if qp.zero is None else qp.zero[:, None]
    return quantize(rows.float(), qp.scale[:, None], zero, grid).to(torch.int8)


def dequantize_rows(codes: torch.Tensor, qp: QParams) -> torch.Tensor:
    """codes [R, L] -> fp32 [R, L]."""
    return dequantize(codes, qp.scale[:, None], None if qp.zero is None else qp.zero[:, None])


def fake_quantize_rows(rows: torch.Tensor, qp: QParams, grid: Grid) -> torch.Tensor:
    """quantize then dequantize in one go (fp32), bit-identical to dequantize_rows(quantize_rows())."""
    zero = None if qp.zero is None else qp.zero[:, None]
    return dequantize(quantize(rows.float(), qp.scale[:, None], zero, grid), qp.scale[:, None], zero)
