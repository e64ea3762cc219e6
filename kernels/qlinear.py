"""Weight-only quantized linear: packed intN weights x fp/bf16 activations -> y = x @ W^T, the
weights dequantized tile by tile inside the matmul (never materialized in memory).

    x: [..., K] fp32/fp16/bf16, packed: [N, ceil(K*b/32)] int32 (``kernels.packing``),
    scale/zero: [N, K/group] -> y: [..., N] x.dtype

The reference is what the eval does with an unpacked weight (``CastedLinear``): dequantize to
fp32, cast to the activation dtype, ``F.linear``. The kernel does the same per tile (fp32
dequant, round to x's dtype, fp32 accumulation, one rounding of the result), so it differs from
the reference only in summation order: tolerance, not bit-exactness (tests state it).

Triton 3.9's interpreter computes ``tl.dot`` of bf16 operands wrongly, so on CPU tensors (only
ever interpreted) the bf16 tiles are widened to fp32 for the dot; that is exact (a product of two
bf16 values is exact in fp32), so the interpreted and the GPU kernel compute the same sums.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pgcompress.errors import MethodError

from ._backend import launcher, triton, tl, use_triton
from .dequant import dequant_packed_ref, qparams_2d

BLOCKS = dict(BLOCK_M=128, BLOCK_N=64, BLOCK_K=64)  # untuned; bench/kernels.py measures them


def qlinear_ref(x, packed, bits, scale, zero=None, group_size=0):
    """x [..., K] -> x @ dequant(packed)^T [..., N] in x.dtype."""
    K = x.shape[-1]
    return F.linear(x, dequant_packed_ref(packed, bits, K, scale, zero, group_size, out_dtype=x.dtype))


def qlinear(x, packed, bits, scale, zero=None, group_size=0, backend=None):
    """Kernel of ``qlinear_ref`` (same arguments, plus ``backend``: see _backend)."""
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise MethodError(f"qlinear: activations must be fp32/fp16/bf16, got {x.dtype}")
    if not use_triton(x, backend):
        return qlinear_ref(x, packed, bits, scale, zero, group_size)
    K = x.shape[-1]
    s, z = qparams_2d(packed, bits, K, scale, zero, group_size)
    x2 = x.reshape(-1, K).contiguous()
    M, N = x2.shape[0], packed.shape[0]
    y = torch.empty(M, N, dtype=x.dtype, device=x.device)
    if y.numel():
        kind = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}[x.dtype]
        grid = (triton.cdiv(M, BLOCKS["BLOCK_M"]), triton.cdiv(N, BLOCKS["BLOCK_N"]))
        launcher(_qlinear_kernel, x)[grid](
            x2, packed.contiguous(), s, s if z is None else z, y.view(torch.int16) if kind == 2 else y,
            M, N, K, packed.shape[1], s.shape[1], group_size or K,
            BITS=bits, HAS_ZERO=z is not None, KIND=kind, WIDEN_BF16=not x.is_cuda, **BLOCKS)
    return y.reshape(*x.shape[:-1], N)


if triton is not None:
    @triton.jit
    def _qlinear_kernel(X, P, S, Z, Y, M, N, K, WS, NG, G, BITS: tl.constexpr, HAS_ZERO: tl.constexpr,
                        KIND: tl.constexpr, WIDEN_BF16: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                        BLOCK_K: tl.constexpr):
        # X: [M, K]; P: [N, WS] words; S, Z: [N, NG]; Y: [M, N]. KIND: 0 fp32, 1 fp16, 2 bf16.
        m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            xm = (m < M)[:, None] & (k < K)[None, :]
            x = tl.load(X + m.to(tl.int64)[:, None] * K + k[None, :], mask=xm, other=0.0)
            wm = (n < N)[:, None] & (k < K)[None, :]
            pos = k * BITS
            word = (pos >> 5)[None, :]
            sh = (pos & 31)[None, :].to(tl.uint32)
            prow = n.to(tl.int64)[:, None] * WS
            lo = tl.load(P + prow + word, mask=wm, other=0).to(tl.uint32, bitcast=True)
            spill = wm & (sh + BITS > 32)
            hi = tl.load(P + prow + word + 1, mask=spill, other=0).to(tl.uint32, bitcast=True)
            v = (lo >> sh) | tl.where(spill, hi << ((32 - sh) & 31), 0)
            q = (v & ((1 << BITS) - 1)).to(tl.int32) - (1 << (BITS - 1))
            sidx = n.to(tl.int64)[:, None] * NG + (k // G)[None, :]
            if HAS_ZERO:
                q = q - tl.load(Z + sidx, mask=wm, other=0)
            w = q.to(tl.float32) * tl.load(S + sidx, mask=wm, other=0.0)  # [BLOCK_N, BLOCK_K]
            if KIND == 2:
                b = w.to(tl.uint32, bitcast=True)
                b = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000  # round on the bits, then an exact cast
                w = b.to(tl.float32, bitcast=True)
                if WIDEN_BF16:
                    acc += tl.dot(x.to(tl.float32), tl.trans(w), input_precision="ieee")
                else:
                    acc += tl.dot(x, tl.trans(w.to(tl.bfloat16)))
            elif KIND == 1:
                acc += tl.dot(x, tl.trans(w.to(tl.float16)))
            else:
                acc += tl.dot(x, tl.trans(w), input_precision="ieee")
        ym = (m < M)[:, None] & (n < N)[None, :]
        yptr = Y + m.to(tl.int64)[:, None] * N + n[None, :]
        if KIND == 2:
            b = acc.to(tl.uint32, bitcast=True)
            b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
            tl.store(yptr, b.to(tl.uint16).to(tl.int16, bitcast=True), mask=ym)
        else:
            tl.store(yptr, acc, mask=ym)
