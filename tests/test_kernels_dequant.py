"""Dense bit-packing and the packed intN dequant kernel == its _ref == the grid's dequantize.

The kernels run on CPU under Triton's interpreter (TRITON_INTERPRET=1, set here before triton is
imported). Without triton these tests skip, unless PGC_REQUIRE_TRITON=1 (CI), where they fail.
"""

from __future__ import annotations

import kernel_env  # noqa: F401  (first: sets TRITON_INTERPRET, skips without triton)
import pytest  # noqa: E402
import torch  # noqa: E402


from pgcompress.errors import MethodError  # noqa: E402
from pgcompress.kernels.dequant import dequant_packed, dequant_packed_ref  # noqa: E402
from pgcompress.kernels.packing import pack_codes, row_words, unpack_codes  # noqa: E402
from pgcompress.quant import clipping  # noqa: E402
from pgcompress.quant import grid as G  # noqa: E402

OUT_DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view({2: torch.int16, 4: torch.int32}[t.element_size()])


def random_codes(rows, cols, b, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-(1 << (b - 1)), 1 << (b - 1), (rows, cols), generator=g).to(torch.int8)


@pytest.mark.parametrize("b", range(2, 9))
@pytest.mark.parametrize("cols", [1, 7, 45, 96])
def test_pack_is_dense_and_matches_a_bit_string(b, cols):
    q = random_codes(3, cols, b, seed=b * 100 + cols)
    packed = pack_codes(q, b)
    assert packed.shape == (3, (cols * b + 31) // 32) and packed.dtype == torch.int32
    for r in range(3):  # independent: the row as one Python integer, code j at bit j*b
        stream = sum((int(q[r, j]) + (1 << (b - 1))) << (j * b) for j in range(cols))
        words = [(stream >> (32 * i)) & 0xFFFFFFFF for i in range(packed.shape[1])]
        assert [w & 0xFFFFFFFF for w in packed[r].tolist()] == words
    assert torch.equal(unpack_codes(packed, b, cols), q)


@pytest.mark.parametrize("b", range(2, 9))
@pytest.mark.parametrize("sym,group", [(True, 0), (False, 0), (True, 32), (False, 64)])
def test_dequant_kernel_equals_ref_and_grid(b, sym, group):
    grid = G.Grid(b, sym, group, "fp16")
    W = torch.randn(7, 192 if group else 45, generator=torch.Generator().manual_seed(b)) * 0.05
    rows = G.to_rows(W, group)
    qp = clipping.absmax_qparams(rows, grid)
    q = G.quantize_rows(rows, qp, grid).reshape(W.shape)
    packed = pack_codes(q, b)
    groups = W.shape[1] // group if group else 1
    scale = qp.scale.half().reshape(7, groups)  # as stored
    zero = None if qp.zero is None else qp.zero.to(torch.int8).reshape(7, groups)
    expected = G.dequantize_rows(G.to_rows(q, group), qp).reshape(W.shape)  # the grid's own dequantize
    for dtype in OUT_DTYPES:
        out = dequant_packed(packed, b, W.shape[1], scale, zero, group, dtype, backend="triton")
        ref = dequant_packed_ref(packed, b, W.shape[1], scale, zero, group, dtype)
        assert torch.equal(bits(out), bits(ref))
        assert torch.equal(bits(ref), bits(expected.to(dtype)))


def test_dequant_default_dispatch_on_cpu_is_the_reference():
    q = random_codes(4, 33, 5)
    scale = torch.rand(4) + 0.5
    a = dequant_packed(pack_codes(q, 5), 5, 33, scale)
    assert torch.equal(bits(a), bits((q.float() * scale[:, None]).to(torch.bfloat16)))


def test_bad_inputs_raise_method_error():
    q = random_codes(2, 10, 4)
    packed = pack_codes(q, 4)
    with pytest.raises(MethodError):
        pack_codes(torch.full((1, 3), 8), 4)  # 8 is outside int4
    with pytest.raises(MethodError):
        pack_codes(q, 9)
    with pytest.raises(MethodError):
        dequant_packed(packed, 4, 17, torch.ones(2), backend="triton")  # 17 codes need 3 words
    with pytest.raises(MethodError):
        dequant_packed(packed, 4, 10, torch.ones(3), backend="triton")  # wrong scale count
    assert row_words(10, 4) == packed.shape[1] == 2
