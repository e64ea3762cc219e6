"""Weight-only quantized matmul kernel == its _ref (dequantize, cast, F.linear) within a stated tolerance.

The kernels run on CPU under Triton's interpreter (TRITON_INTERPRET=1, set here before triton is
imported). Without triton these tests skip, unless PGC_REQUIRE_TRITON=1 (CI), where they fail.
"""

from __future__ import annotations

import kernel_env  # noqa: F401  (first: sets TRITON_INTERPRET, skips without triton)
import pytest  # noqa: E402
import torch  # noqa: E402


from pgcompress.kernels import qlinear as QL  # noqa: E402
from pgcompress.kernels.packing import pack_codes  # noqa: E402
from pgcompress.quant import clipping  # noqa: E402
from pgcompress.quant import grid as G  # noqa: E402

# |kernel - exact| <= RTOL * |exact| + ATOL_PER_TERM * sum_k |x_k w_k|, exact = the same
# (dtype-rounded) operands multiplied in fp64: one final rounding to the dtype (half an ulp:
# 2^-9 bf16, 2^-12 fp16, 2^-25 fp32... doubled for the reference's own rounding) plus fp32
# accumulation in a different order.
TOL = {torch.float32: (1e-6, 1e-6), torch.float16: (2.0 ** -10, 1e-6), torch.bfloat16: (2.0 ** -7, 1e-6)}


def quantized(n, k, b, sym, group, seed):
    grid = G.Grid(b, sym, group, "bf16")
    W = torch.randn(n, k, generator=torch.Generator().manual_seed(seed)) * 0.05
    rows = G.to_rows(W, group)
    qp = clipping.absmax_qparams(rows, grid)
    q = G.quantize_rows(rows, qp, grid).reshape(W.shape)
    groups = k // group if group else 1
    return (pack_codes(q, b), qp.scale.to(torch.bfloat16).reshape(n, groups),
            None if qp.zero is None else qp.zero.reshape(n, groups))


@pytest.mark.parametrize("b,sym,group", [(2, True, 0), (3, False, 32), (5, True, 32), (6, True, 0), (7, False, 0),
                                         (8, True, 64), (4, False, 64)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_qlinear_kernel_matches_ref(b, sym, group, dtype, monkeypatch):
    # small blocks, so ragged shapes span several tiles in every dimension
    monkeypatch.setattr(QL, "BLOCKS", dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=32))
    k = 128 if group else 77
    packed, scale, zero = quantized(37, k, b, sym, group, seed=b)
    x = torch.randn(2, 19, k, generator=torch.Generator().manual_seed(b + 1)).to(dtype)
    y = QL.qlinear(x, packed, b, scale, zero, group, backend="triton")
    ref = QL.qlinear_ref(x, packed, b, scale, zero, group)
    assert y.shape == ref.shape == (2, 19, 37) and y.dtype == ref.dtype == dtype
    w = QL.dequant_packed_ref(packed, b, k, scale, zero, group, out_dtype=dtype).double()
    exact = x.double() @ w.T
    bound = x.double().abs() @ w.abs().T
    rtol, atol = TOL[dtype]
    for got in (y, ref):
        assert ((got.double() - exact).abs() <= rtol * exact.abs() + atol * bound).all()
