"""Fused fake-quant kernel == its _ref == the torch grid (pgcompress.quant.grid / qat), bit for bit.

The kernels run on CPU under Triton's interpreter (TRITON_INTERPRET=1, set here before triton is
imported). Without triton these tests skip, unless PGC_REQUIRE_TRITON=1 (CI), where they fail.
"""

from __future__ import annotations

import kernel_env  # noqa: F401  (first: sets TRITON_INTERPRET, skips without triton)
import pytest  # noqa: E402
import torch  # noqa: E402

from pgcompress import qat  # noqa: E402
from pgcompress.kernels.fake_quant import (absmax_fake_quant_rows, absmax_fake_quant_rows_ref,  # noqa: E402
                                           fake_quant_rows, fake_quant_rows_ref)
from pgcompress.quant import clipping  # noqa: E402
from pgcompress.quant import grid as G  # noqa: E402
from pgcompress.quant import int8_ref  # noqa: E402
from pgcompress.quant.intn import parse_name  # noqa: E402
from pgcompress.quant.rtn import fake_quant_matrix  # noqa: E402

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view({1: torch.int8, 2: torch.int16, 4: torch.int32}[t.element_size()])


def weight(rows, cols, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * 0.05
    w[1] = 0.0  # an all-zero row: scale 1, codes 0
    w[2, 3] = 0.9  # an outlier, so clipping rules bind
    if rows > 3:
        w[3] = 1e-9  # underflows the fp16 scale
    return w.to(dtype)


@pytest.mark.parametrize("b", range(2, 9))
@pytest.mark.parametrize("mods", ["", "-asym", "-g32-bf16", "-g32-asym"])
def test_absmax_kernel_equals_ref_and_grid(b, mods):
    spec = parse_name(f"int{b}-rtn{mods}")
    for dtype in DTYPES:
        W = weight(6, 96 if spec.group else 45, dtype, seed=b)  # 45: not a multiple of any block
        rows = G.to_rows(W, spec.group)
        out, scale, zero = absmax_fake_quant_rows(rows, spec.grid, backend="triton")
        ref_out, ref_scale, ref_zero = absmax_fake_quant_rows_ref(rows, spec.grid)
        assert torch.equal(bits(out), bits(ref_out))
        assert torch.equal(scale, ref_scale)
        assert (zero is None) == spec.symmetric and (zero is None or torch.equal(zero, ref_zero))
        # independent: what pack's RTN reconstructs, rounded once to the weight's dtype
        grid_out = fake_quant_matrix(spec, W).to(dtype)
        assert torch.equal(bits(out.reshape(W.shape)), bits(grid_out))


@pytest.mark.parametrize("method", ["int6-sdclip", "int5-clip-asym", "int4-pct-g32", "int3-sdclip-kauto-bf16",
                                    "int8-sdclip-g64-asym", "int2-clip"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_given_qparams_kernel_equals_grid(method, dtype):
    spec = parse_name(method)
    W = weight(5, 128 if spec.group else 77, dtype, seed=len(method))
    rows = G.to_rows(W, spec.group)
    scale, zero = qat.qparams(W, method)
    out = fake_quant_rows(rows, scale[:, 0], None if zero is None else zero[:, 0], spec.grid.qmin,
                          spec.grid.qmax, backend="triton")
    ref = fake_quant_rows_ref(rows, scale[:, 0], None if zero is None else zero[:, 0], spec.grid.qmin,
                              spec.grid.qmax)
    assert torch.equal(bits(out), bits(ref))
    assert torch.equal(bits(out.reshape(W.shape)), bits(fake_quant_matrix(spec, W).to(dtype)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_int8_ref_clip_path_equals_int8_ref(dtype):
    W = weight(9, 70, dtype, seed=5)
    clip = int8_ref.quantile_linear(W.float().abs(), int8_ref.CLIP_Q)
    scale = (clip / 127.0).clamp_min(1.0 / 127.0)
    out = fake_quant_rows(W, scale, None, -127, 127, clip=clip, dq_scale=scale.half().float(), backend="triton")
    q, s16 = int8_ref.quantize_rows(W)
    assert torch.equal(bits(out), bits((q.float() * s16.float()[:, None]).to(dtype)))


def test_ties_round_half_to_even():
    # w / s lands exactly on k + 0.5 (s a power of two): torch.round goes to the even code
    W = torch.tensor([[0.125, 0.375, -0.125, -0.375, 0.625, -0.625, 1.125, 0.0]])
    grid = G.Grid(5, True, 0, "fp16")
    s = torch.tensor([0.25])
    out = fake_quant_rows(W, s, None, grid.qmin, grid.qmax, backend="triton")
    assert torch.equal(out, G.fake_quantize_rows(W, G.QParams(s), grid))
    assert out.tolist() == [[0.0, 0.5, 0.0, -0.5, 0.5, -0.5, 1.0, 0.0]]
    z = torch.tensor([3], dtype=torch.int32)  # and with a zero point
    out = fake_quant_rows(W, s, z, -16, 15, backend="triton")
    assert torch.equal(out, G.fake_quantize_rows(W, G.QParams(s, z), G.Grid(5, False)))


def test_extreme_values_clamp_like_the_grid():
    W = torch.tensor([[3e4, -3e4, 1.0, 0.0, -0.0, 1e-30, 65504.0, -2.0]])
    grid = G.Grid(4, True, 0, "fp16")
    small = torch.tensor([1e-3])  # every code saturates
    assert torch.equal(fake_quant_rows(W, small, None, grid.qmin, grid.qmax, backend="triton"),
                       G.fake_quantize_rows(W, G.QParams(small), grid))
    out, _, _ = absmax_fake_quant_rows(W, grid, backend="triton")
    assert torch.equal(out, fake_quant_matrix(parse_name("int4-rtn"), W))


@pytest.mark.parametrize("method", ["int6-rtn", "int4-rtn-g32-asym-bf16", "int5-sdclip", "int8-ref"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])  # bf16: the reference's embedding
def test_qat_kernel_path_equals_torch_path(monkeypatch, method, dtype):
    """pgcompress.qat's CUDA branch, forced onto the interpreter, against its own torch branch."""
    W = weight(40, 64, dtype, seed=7).requires_grad_()
    torch_path = qat.fake_quant(W, method)
    monkeypatch.setattr(qat, "_on_kernel", lambda w: True)
    kernel_path = qat.fake_quant(W, method)
    assert torch.equal(bits(kernel_path), bits(torch_path))
    g = torch.randn(40, 64, generator=torch.Generator().manual_seed(3)).to(dtype)
    (kernel_path * g).sum().backward()
    assert torch.equal(W.grad, g)  # straight-through


def test_bad_arguments_raise_method_error():
    from pgcompress.errors import MethodError

    with pytest.raises(MethodError):
        fake_quant_rows(torch.zeros(2, 3, 4), torch.ones(2), None, -7, 7, backend="triton")
    with pytest.raises(MethodError):
        fake_quant_rows(torch.zeros(2, 3), torch.ones(2), None, -7, 7, backend="cuda")
