"""Packed intN -> fp32/fp16/bf16 dequant (per-row or per-group scales, optional zero points), for
the eval's unpack on CUDA after the entropy decode. Layout: ``kernels.packing``.

    w = (code - zero) * scale     code: [N, K] from packed [N, ceil(K*b/32)] int32
                                  scale, zero: [N, K / group] (group 0: [N] or [N, 1])

fp32 arithmetic as ``grid.dequantize``, then one rounding to the output dtype (nearest-even; bf16
is rounded on the bits so the interpreter agrees with the GPU): bit-exact with the reference.
"""

from __future__ import annotations

import torch

from pgcompress.errors import MethodError
from pgcompress.quant import grid as G

from ._backend import launcher, next_pow2, triton, tl, use_triton
from .packing import row_words, unpack_codes

OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def dequant_packed_ref(packed, bits, cols, scale, zero=None, group_size=0, out_dtype=torch.bfloat16):
    """packed [N, W] int32, scale [N, K/g] (any float), zero [N, K/g] int | None -> [N, cols] out_dtype."""
    s, z = qparams_2d(packed, bits, cols, scale, zero, group_size)
    codes = G.to_rows(unpack_codes(packed, bits, cols), group_size)  # [N * groups, g]
    w = G.dequantize(codes, s.reshape(-1, 1), None if z is None else z.reshape(-1, 1))
    return w.reshape(packed.shape[0], cols).to(out_dtype)


def dequant_packed(packed, bits, cols, scale, zero=None, group_size=0, out_dtype=torch.bfloat16, backend=None):
    """Kernel of ``dequant_packed_ref`` (same arguments, plus ``backend``: see _backend)."""
    if not use_triton(packed, backend):
        return dequant_packed_ref(packed, bits, cols, scale, zero, group_size, out_dtype)
    s, z = qparams_2d(packed, bits, cols, scale, zero, group_size)
    N = packed.shape[0]
    out = torch.empty(N, cols, dtype=out_dtype, device=packed.device)
    if out.numel() == 0:
        return out
    block_c = min(next_pow2(cols), 256)
    block_n = min(next_pow2(N), max(1, 4096 // block_c))
    out_bits = out.view(torch.int16) if out_dtype == torch.bfloat16 else out
    grid = (triton.cdiv(N, block_n), triton.cdiv(cols, block_c))
    launcher(_dequant_kernel, packed)[grid](
        packed.contiguous(), out_bits, s, s if z is None else z, N, cols, packed.shape[1], s.shape[1],
        group_size or cols, BITS=bits, HAS_ZERO=z is not None, OUT_BF16=out_dtype == torch.bfloat16,
        BLOCK_N=block_n, BLOCK_C=block_c)
    return out


def qparams_2d(packed, bits, cols, scale, zero, group_size):
    """Checks shapes; -> (scale [N, groups] fp32 contiguous, zero [N, groups] int32 or None)."""
    if not isinstance(bits, int) or not 2 <= bits <= 8:
        raise MethodError(f"packed codes must be 2..8 bits, got {bits!r}")
    N = packed.shape[0] if packed.ndim == 2 else -1
    if packed.ndim != 2 or packed.dtype != torch.int32 or packed.shape[1] != row_words(cols, bits):
        raise MethodError(f"dequant: expected packed [N, {row_words(cols, bits)}] int32 for {cols} {bits}-bit "
                          f"codes per row, got {tuple(packed.shape)} {packed.dtype}")
    if group_size and cols % group_size:
        raise MethodError(f"dequant: {cols} columns are not a multiple of the group size {group_size}")
    groups = cols // group_size if group_size else 1
    if scale.numel() != N * groups:
        raise MethodError(f"dequant: expected {N * groups} scales ([{N}, {groups}]), got {tuple(scale.shape)}")
    s = scale.reshape(N, groups).to(device=packed.device, dtype=torch.float32).contiguous()
    if zero is None:
        return s, None
    if zero.numel() != N * groups:
        raise MethodError(f"dequant: expected {N * groups} zero points, got {tuple(zero.shape)}")
    return s, zero.reshape(N, groups).to(device=packed.device, dtype=torch.int32).contiguous()


if triton is not None:
    @triton.jit
    def _dequant_kernel(P, OUT, S, Z, N, C, WS, NG, G, BITS: tl.constexpr, HAS_ZERO: tl.constexpr,
                        OUT_BF16: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
        # P: [N, WS] int32 words; OUT: [N, C]; S, Z: [N, NG], group g covers columns [g*G, g*G + G).
        n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        m = (n < N)[:, None] & (c < C)[None, :]
        pos = c * BITS
        word = (pos >> 5)[None, :]
        sh = (pos & 31)[None, :].to(tl.uint32)
        prow = n.to(tl.int64)[:, None] * WS
        lo = tl.load(P + prow + word, mask=m, other=0).to(tl.uint32, bitcast=True)
        spill = m & (sh + BITS > 32)
        hi = tl.load(P + prow + word + 1, mask=spill, other=0).to(tl.uint32, bitcast=True)
        v = (lo >> sh) | tl.where(spill, hi << ((32 - sh) & 31), 0)
        q = (v & ((1 << BITS) - 1)).to(tl.int32) - (1 << (BITS - 1))
        sidx = n.to(tl.int64)[:, None] * NG + (c // G)[None, :]
        s = tl.load(S + sidx, mask=m, other=1.0)
        if HAS_ZERO:
            q = q - tl.load(Z + sidx, mask=m, other=0)
        w = q.to(tl.float32) * s
        optr = OUT + n.to(tl.int64)[:, None] * C + c[None, :]
        if OUT_BF16:
            b = w.to(tl.uint32, bitcast=True)
            b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
            tl.store(optr, b.to(tl.uint16).to(tl.int16, bitcast=True), mask=m)
        else:
            tl.store(optr, w, mask=m)
