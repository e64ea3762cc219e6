"""Fused fake-quant (quantize -> dequantize on the grid) for QAT, one kernel for the forward; the
backward is the straight-through identity, so it needs no kernel.

Two entry points, each with a pure-torch ``_ref`` of the same signature:

- ``fake_quant_rows``: rows of the grid view [R, L] with given qparams (scale [R] fp32 holding
  stored-dtype values, zero [R] int32 or None) -> the values ``pgc pack`` + ``unpack`` give. The
  clip rules that need a reduction whose fp32 rounding depends on the order (SDClip's std, the
  MSE search, percentiles, int8-ref's quantile) choose their qparams in torch first; an optional
  ``clip`` [R] (clamp to [-clip, clip] first) and ``dq_scale`` [R] (multiply by this instead of
  ``scale``) give int8-ref's rule, which rounds with the fp32 scale but stores an fp16 one.
- ``absmax_fake_quant_rows``: the RTN family (clip = row absmax, or row min/max when
  asymmetric) with the qparams computed in the same kernel - max/min are exact in any order, so
  this is bit-exact too - returning (out, scale, zero).

Bit-exactness: division is IEEE round-to-nearest (``div_rn``, Triton's ``/`` is approximate),
rounding half-to-even uses the 1.5 * 2^23 trick on values clamped to +-1024 (wider than any code
plus zero point, so the clamp never changes a code), and bf16 rounding (of scales and outputs) is
done on the bits, because the interpreter truncates where the GPU rounds.
"""

from __future__ import annotations

import torch

from pgcompress.errors import MethodError
from pgcompress.quant import clipping
from pgcompress.quant import grid as G

from ._backend import launcher, next_pow2, triton, tl, use_triton

_BLOCK_ELEMS = 4096
_OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def fake_quant_rows_ref(rows, scale, zero, qmin, qmax, clip=None, dq_scale=None):
    """rows [R, L] float, scale [R] fp32, zero [R] int32 | None -> [R, L] rows.dtype."""
    x = rows.float()
    if clip is not None:
        c = clip.float()[:, None]
        x = torch.maximum(torch.minimum(x, c), -c)
    z = None if zero is None else zero.to(torch.int32)[:, None]
    q = torch.round(x / scale.float()[:, None])
    if z is not None:
        q = q + z.float()
    q = torch.clamp(q, qmin, qmax).to(torch.int32)
    if z is not None:
        q = q - z
    s = scale if dq_scale is None else dq_scale
    return (q.float() * s.float()[:, None]).to(rows.dtype)


def fake_quant_rows(rows, scale, zero, qmin, qmax, clip=None, dq_scale=None, backend=None):
    """Kernel of ``fake_quant_rows_ref`` (same arguments, plus ``backend``: see _backend)."""
    _check_rows(rows, qmin, qmax)
    if not use_triton(rows, backend):
        return fake_quant_rows_ref(rows, scale, zero, qmin, qmax, clip, dq_scale)
    R = rows.shape[0]

    def per_row(t, dtype):  # [R] (or [R, 1]) on rows' device, contiguous
        return None if t is None else t.detach().reshape(R).to(device=rows.device, dtype=dtype).contiguous()

    s, c, d = (per_row(t, torch.float32) for t in (scale, clip, dq_scale))
    return _launch(rows, s, per_row(zero, torch.int32), c, d, qmin, qmax, absmax=False, symmetric=zero is None,
                   scale_bf16=False)


def absmax_fake_quant_rows_ref(rows, grid):
    """rows [R, L] float, grid -> (out [R, L] rows.dtype, scale [R] fp32, zero [R] int32 | None)."""
    qp = clipping.absmax_qparams(rows, grid)
    return fake_quant_rows_ref(rows, qp.scale, qp.zero, grid.qmin, grid.qmax), qp.scale, qp.zero


def absmax_fake_quant_rows(rows, grid, backend=None):
    """Kernel of ``absmax_fake_quant_rows_ref``: qparams and fake-quant in one pass over the rows."""
    _check_rows(rows, grid.qmin, grid.qmax)
    if not use_triton(rows, backend):
        return absmax_fake_quant_rows_ref(rows, grid)
    R = rows.shape[0]
    s = torch.empty(R, dtype=torch.float32, device=rows.device)
    z = None if grid.symmetric else torch.empty(R, dtype=torch.int32, device=rows.device)
    out = _launch(rows, s, z, None, None, grid.qmin, grid.qmax, absmax=True, symmetric=grid.symmetric,
                  scale_bf16=grid.scale_dtype == "bf16")
    return out, s, z


def _check_rows(rows, qmin, qmax):
    if rows.ndim != 2 or rows.dtype not in _OUT_DTYPES:
        raise MethodError(f"fake-quant kernel takes [rows, cols] fp32/fp16/bf16, got {tuple(rows.shape)} {rows.dtype}")
    if not -128 <= qmin < qmax <= 127:
        raise MethodError(f"fake-quant kernel: codes must fit int8, got [{qmin}, {qmax}]")


def _launch(rows, s, z, clip, dq, qmin, qmax, absmax, symmetric, scale_bf16):
    rows = rows.detach().contiguous()
    R, L = rows.shape
    out = torch.empty_like(rows)
    if rows.numel() == 0:
        return out
    block_l = min(next_pow2(L), 1024)
    block_r = min(next_pow2(R), max(1, _BLOCK_ELEMS // block_l))
    qdiv = float(qmax if symmetric else qmax - qmin)
    out_bits = out.view(torch.int16) if out.dtype == torch.bfloat16 else out
    dummy = s  # never read: the constexpr flags turn its loads off
    kernel = launcher(_fake_quant_kernel, rows)
    kernel[(triton.cdiv(R, block_r),)](
        rows, out_bits, s, dummy if z is None else z, dummy if clip is None else clip, dummy if dq is None else dq,
        R, L, qmin, qmax, qdiv,
        ABSMAX=absmax, SYMMETRIC=symmetric, HAS_CLIP=clip is not None, HAS_DQ=dq is not None,
        SCALE_BF16=scale_bf16, OUT_BF16=out.dtype == torch.bfloat16, BLOCK_R=block_r, BLOCK_L=block_l)
    return out


if triton is not None:
    @triton.jit
    def _fake_quant_kernel(W, OUT, SCALE, ZERO, CLIP, DQ, R, L, qmin, qmax, qdiv,
                           ABSMAX: tl.constexpr, SYMMETRIC: tl.constexpr, HAS_CLIP: tl.constexpr,
                           HAS_DQ: tl.constexpr, SCALE_BF16: tl.constexpr, OUT_BF16: tl.constexpr,
                           BLOCK_R: tl.constexpr, BLOCK_L: tl.constexpr):
        # W, OUT: [R, L] row-major; SCALE/ZERO/CLIP/DQ: [R]. One program: BLOCK_R whole rows.
        rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
        rmask = rows < R
        base = rows.to(tl.int64)[:, None] * L
        if ABSMAX:
            hi2 = tl.zeros([BLOCK_R, BLOCK_L], dtype=tl.float32)
            lo2 = tl.zeros([BLOCK_R, BLOCK_L], dtype=tl.float32)
            for c0 in range(0, L, BLOCK_L):
                cols = c0 + tl.arange(0, BLOCK_L)
                m = rmask[:, None] & (cols < L)[None, :]
                x = tl.load(W + base + cols[None, :], mask=m, other=0.0).to(tl.float32)
                if SYMMETRIC:
                    hi2 = tl.maximum(hi2, tl.abs(x))
                else:
                    hi2 = tl.maximum(hi2, x)
                    lo2 = tl.minimum(lo2, x)
            hi = tl.max(hi2, axis=1)
            lo = tl.min(lo2, axis=1)  # both start at 0: the asymmetric range always holds 0
            if SYMMETRIC:
                s = tl.math.div_rn(hi, qdiv)
            else:
                s = tl.math.div_rn(hi - lo, qdiv)
            if SCALE_BF16:
                b = s.to(tl.uint32, bitcast=True)
                b = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000
                s = b.to(tl.float32, bitcast=True)
            else:
                s = tl.minimum(s, 65504.0).to(tl.float16).to(tl.float32)
            s = tl.where(s > 0, s, 1.0)
            tl.store(SCALE + rows, s, mask=rmask)
            if not SYMMETRIC:
                t = tl.minimum(tl.maximum(tl.math.div_rn(lo, s), -1024.0), 1024.0)
                t = (t + 12582912.0) - 12582912.0
                zf = tl.minimum(tl.maximum(qmin - t, qmin), qmax)
                tl.store(ZERO + rows, zf.to(tl.int32), mask=rmask)
        else:
            s = tl.load(SCALE + rows, mask=rmask, other=1.0)
            if not SYMMETRIC:
                zf = tl.load(ZERO + rows, mask=rmask, other=0).to(tl.float32)
        if HAS_DQ:
            d = tl.load(DQ + rows, mask=rmask, other=1.0)
        else:
            d = s
        if HAS_CLIP:
            c = tl.load(CLIP + rows, mask=rmask, other=0.0)
        for c0 in range(0, L, BLOCK_L):
            cols = c0 + tl.arange(0, BLOCK_L)
            m = rmask[:, None] & (cols < L)[None, :]
            x = tl.load(W + base + cols[None, :], mask=m, other=0.0).to(tl.float32)
            if HAS_CLIP:
                x = tl.maximum(tl.minimum(x, c[:, None]), -c[:, None])
            y = tl.minimum(tl.maximum(tl.math.div_rn(x, s[:, None]), -1024.0), 1024.0)
            q = (y + 12582912.0) - 12582912.0
            if not SYMMETRIC:
                q = q + zf[:, None]
            qi = tl.minimum(tl.maximum(q, qmin), qmax).to(tl.int32)
            if not SYMMETRIC:
                qi = qi - zf[:, None].to(tl.int32)
            v = qi.to(tl.float32) * d[:, None]
            if OUT_BF16:
                b = v.to(tl.uint32, bitcast=True)
                b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
                tl.store(OUT + base + cols[None, :], b.to(tl.uint16).to(tl.int16, bitcast=True), mask=m)
            else:
                tl.store(OUT + base + cols[None, :], v, mask=m)
