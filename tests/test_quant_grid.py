"""The shared grid against independent numpy arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pgcompress.errors import MethodError
from pgcompress.quant import grid as G


@pytest.mark.parametrize("bits", range(2, 9))
def test_code_ranges(bits):
    assert (G.Grid(bits).qmin, G.Grid(bits).qmax) == (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1)
    asym = G.Grid(bits, symmetric=False)
    assert (asym.qmin, asym.qmax) == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    assert asym.qmax - asym.qmin + 1 == 2 ** bits


@pytest.mark.parametrize("kw", [{"bits": 1}, {"bits": 9}, {"bits": 4, "group_size": 48}, {"bits": 4, "scale_dtype": "fp8"}])
def test_bad_grids(kw):
    with pytest.raises(MethodError):
        G.Grid(**kw)


def test_store_scale_is_nearest_fp16_and_bf16():
    x = torch.rand(1000, dtype=torch.float64).float() * 3 + 1e-3
    fp16 = G.store_scale(x, "fp16")
    assert np.array_equal(fp16.numpy(), x.numpy().astype(np.float16).astype(np.float32))
    bf16 = G.store_scale(x, "bf16")
    # bf16 = the top 16 bits of fp32 after round-half-even on the low 16
    u = x.numpy().view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    assert np.array_equal(bf16.numpy(), rounded.astype(np.uint32).view(np.float32))
    assert G.store_scale(torch.zeros(3), "fp16").tolist() == [1.0, 1.0, 1.0]


def numpy_sym(rows: np.ndarray, bits: int):
    qmax = 2 ** (bits - 1) - 1
    s = (np.abs(rows).max(axis=1) / np.float32(qmax)).astype(np.float16).astype(np.float32)
    s[s == 0] = 1
    q = np.clip(np.round(rows / s[:, None]), -qmax, qmax)
    return q, s


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
def test_symmetric_codes_match_numpy(bits):
    rows = torch.randn(40, 96, generator=torch.Generator().manual_seed(bits)) * 0.1
    qp = G.choose_qparams(G.Grid(bits), rows.abs().amax(dim=1))
    codes = G.quantize_rows(rows, qp, G.Grid(bits))
    q, s = numpy_sym(rows.numpy(), bits)
    assert np.array_equal(qp.scale.numpy(), s)
    assert np.array_equal(codes.numpy(), q.astype(np.int8))
    # dequant is exact: a code times an fp16 scale fits in fp32
    deq = G.dequantize_rows(codes, qp).numpy().astype(np.float64)
    assert np.array_equal(deq, q.astype(np.float64) * s.astype(np.float64)[:, None])


@pytest.mark.parametrize("bits", [2, 3, 5, 8])
def test_asymmetric_grid_holds_zero_and_range(bits):
    g = torch.Generator().manual_seed(bits)
    rows = torch.rand(30, 64, generator=g) * 0.3 + 0.05  # all positive: the range must be widened to 0
    rows[::2] -= 0.2
    rows[:, 5] = 0.0
    grid = G.Grid(bits, symmetric=False)
    qp = G.choose_qparams(grid, rows.amin(dim=1), rows.amax(dim=1))
    assert qp.zero.dtype == torch.int32 and int(qp.zero.min()) >= grid.qmin and int(qp.zero.max()) <= grid.qmax
    deq = G.dequantize_rows(G.quantize_rows(rows, qp, grid), qp)
    assert torch.all(deq[:, 5] == 0)  # zero is exactly representable
    lo = np.minimum(rows.numpy().min(axis=1), 0)
    hi = np.maximum(rows.numpy().max(axis=1), 0)
    s = qp.scale.numpy().astype(np.float64)
    # the grid spans [lo, hi] up to the scale's fp16 rounding and the zero point's rounding
    top = (grid.qmax - qp.zero.numpy()) * s
    bot = (grid.qmin - qp.zero.numpy()) * s
    assert np.all(top >= hi - s * (0.5 + 1e-3 * grid.levels)) and np.all(bot <= lo + s * (0.5 + 1e-3 * grid.levels))


def test_to_rows_groups_consecutive_input_columns():
    W = torch.arange(4 * 128, dtype=torch.float32).reshape(4, 128)
    rows = G.to_rows(W, 32)
    assert rows.shape == (16, 32)
    assert torch.equal(rows[5], W[1, 32:64])
    with pytest.raises(MethodError):
        G.to_rows(torch.zeros(2, 100), 64)


def test_fake_quant_equals_quant_then_dequant():
    rows = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    for grid in (G.Grid(5), G.Grid(3, symmetric=False, scale_dtype="bf16")):
        qp = G.choose_qparams(grid, rows.amin(dim=1), rows.amax(dim=1)) if not grid.symmetric \
            else G.choose_qparams(grid, rows.abs().amax(dim=1))
        a = G.fake_quantize_rows(rows, qp, grid)
        b = G.dequantize_rows(G.quantize_rows(rows, qp, grid), qp)
        assert torch.equal(a.view(torch.int32), b.view(torch.int32))


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(2, 8), seed=st.integers(0, 2 ** 16), mag=st.floats(1e-4, 1e3),
       sd=st.sampled_from(["fp16", "bf16"]))
def test_error_bound_inside_the_clip_range(bits, seed, mag, sd):
    grid = G.Grid(bits, scale_dtype=sd)
    rows = torch.randn(8, 32, generator=torch.Generator().manual_seed(seed)) * mag
    qp = G.choose_qparams(grid, rows.abs().amax(dim=1))
    deq = G.dequantize_rows(G.quantize_rows(rows, qp, grid), qp).double()
    s = qp.scale.double()[:, None]
    w = rows.double()
    inside = w.abs() <= grid.qmax * s
    err = (w - deq).abs()
    assert torch.all(err[inside] <= (s / 2 * (1 + 1e-6)).expand_as(w)[inside])
    # outside (the stored scale rounded down a little): clamped to the extreme code
    assert torch.all(deq[~inside].abs() == (grid.qmax * s).expand_as(w)[~inside])


def test_banks_get_a_scale_per_slice_row():
    """A [slices, out, in] bank is quantized as slices*out rows of in (one scale per slice row),
    not as [slices, out*in] (one scale per slice): per-row absmax, computed independently."""
    import numpy as np

    from pgcompress.quant.base import QuantContext
    from pgcompress.registry import get_method

    g = torch.Generator().manual_seed(3)
    bank = torch.randn(4, 6, 32, generator=g) * torch.logspace(-2, 0, 6)[None, :, None]
    enc = get_method("int6-rtn").quantize("bank", bank, QuantContext())
    rows = bank.reshape(24, 32).double().numpy()
    scale = (np.abs(rows).max(axis=1) / 31).astype(np.float16).astype(np.float64)
    assert enc.streams["scale"].shape == (24,)
    assert np.array_equal(enc.streams["scale"].astype(np.float64), scale)
    back = get_method("int6-rtn").dequantize(enc, tuple(bank.shape), torch.float32)
    assert back.shape == bank.shape
    assert float((back - bank).abs().max(dim=-1).values.div(torch.from_numpy(scale).reshape(4, 6)).max()) <= 0.5 + 1e-6
