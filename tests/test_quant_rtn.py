"""int{N}-rtn (+ group, asym, bf16 variants) against an independent numpy RTN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgcompress.errors import MethodError
from pgcompress.quant.base import QuantContext
from pgcompress.registry import get_method


def fp16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


def numpy_rtn(W: np.ndarray, bits: int, group: int = 0, sym: bool = True):
    """Independent RTN: per row (or group), absmax (or min/max) range -> (codes, scale, zero)."""
    out, n = W.shape
    g = group or n
    rows = W.reshape(out * (n // g), g)
    if sym:
        qmax = 2 ** (bits - 1) - 1
        s = fp16(np.abs(rows).max(axis=1) / np.float32(qmax))
        s[s == 0] = 1
        q = np.clip(np.round(rows / s[:, None]), -qmax, qmax)
        return q.reshape(out, n), s, None
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    lo = np.minimum(rows.min(axis=1), 0).astype(np.float32)
    hi = np.maximum(rows.max(axis=1), 0).astype(np.float32)
    s = fp16((hi - lo) / np.float32(2 ** bits - 1))
    s[s == 0] = 1
    z = np.clip(qmin - np.round(lo / s), qmin, qmax)
    q = np.clip(np.round(rows / s[:, None]) + z[:, None], qmin, qmax)
    return q.reshape(out, n), s, z


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("group,sym", [(0, True), (64, True), (0, False), (32, False)])
def test_rtn_matches_numpy(bits, group, sym):
    W = torch.randn(24, 128, generator=torch.Generator().manual_seed(bits * 7 + group)) * 0.05
    W[3] = 0.0  # an all-zero row
    name = f"int{bits}-rtn" + (f"-g{group}" if group else "") + ("" if sym else "-asym")
    enc = get_method(name).quantize("w", W, QuantContext())
    q, s, z = numpy_rtn(W.numpy(), bits, group, sym)
    assert enc.streams["q"].dtype == np.int8
    assert np.array_equal(enc.streams["q"].reshape(-1), q.reshape(-1).astype(np.int8))
    assert np.array_equal(enc.streams["scale"].astype(np.float32), s)
    if sym:
        assert "zero" not in enc.streams
        want = q * s.repeat(q.size // s.size).reshape(q.shape)
    else:
        assert np.array_equal(enc.streams["zero"], z.astype(np.int8))
        rep = q.size // s.size
        want = (q - z.repeat(rep).reshape(q.shape)) * s.repeat(rep).reshape(q.shape)
    got = get_method(name).dequantize(enc, tuple(W.shape), torch.float32)
    assert np.array_equal(got.numpy(), want.astype(np.float32))


def test_bf16_scales_are_stored_as_bf16_bits():
    W = torch.randn(8, 64, generator=torch.Generator().manual_seed(1))
    enc = get_method("int4-rtn-bf16").quantize("w", W, QuantContext())
    assert enc.streams["scale"].dtype == np.uint16
    want = (W.abs().amax(dim=1) / 7).to(torch.bfloat16)
    assert np.array_equal(enc.streams["scale"], want.view(torch.uint16).numpy())


def test_rtn_keeps_dtype_and_shape_of_nd_and_bf16_tensors():
    t = torch.randn(6, 4, 32, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    m = get_method("int8-rtn")
    out = m.dequantize(m.quantize("t", t, QuantContext()), tuple(t.shape), t.dtype)
    assert out.dtype == torch.bfloat16 and out.shape == t.shape
    assert (out.float() - t.float()).abs().max() <= t.float().abs().max() / 127


@pytest.mark.parametrize("name", ["int9-rtn", "int6-rtn-g48", "int6-rtn-k3", "int6-rtn+lqer-r0", "int6-foo",
                                  "int6-rtn-p99", "int6-clip-kauto"])
def test_bad_names_are_method_errors(name):
    with pytest.raises(MethodError):
        get_method(name)


def test_group_that_does_not_divide_is_a_method_error():
    with pytest.raises(MethodError, match="multiple of the group size"):
        get_method("int4-rtn-g64").quantize("w", torch.randn(4, 96), QuantContext())
