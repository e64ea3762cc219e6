"""Every grid method: error within its analytic bound; pack -> unpack == the method's own dequantize
== pgcompress.quant.quantize.quantize, bit for bit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import pgcompress
from conftest import reference_like_state_dict
from pgcompress.errors import FormatError
from pgcompress.quant import grid as G
from pgcompress.quant.base import Encoded, QuantContext
from pgcompress.quant.calibration import calibration_model, collect_hessians
from pgcompress.quant.intn import parse_name
from pgcompress.quant.quantize import quantize
from pgcompress.registry import get_method

RTN_METHODS = ["int8-rtn", "int2-rtn", "int7-rtn-g32", "int6-clip-g64", "int5-sdclip", "int6-sdclip-kauto",
               "int4-pct-p99.5-asym", "int3-rtn-g32-asym-bf16", "int2-clip-asym", "int8-sdclip-k20-bf16"]
GPTQ_METHODS = ["int6-gptq", "int4-gptq-g32-asym", "int5-gptq-k6.2", "int3-gptq-bf16"]
LQER_METHODS = ["int6-gptq+lqer", "int4-rtn+lqer-r2-f2", "int3-clip-g64+lqer-r8-f8"]


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(
        a.contiguous().view(torch.uint8 if a.element_size() == 1 else torch.int16 if a.element_size() == 2 else torch.int32),
        b.contiguous().view(torch.uint8 if b.element_size() == 1 else torch.int16 if b.element_size() == 2 else torch.int32))


@pytest.mark.parametrize("name", RTN_METHODS)
def test_rtn_error_within_analytic_bound(name):
    spec = parse_name(name)
    W = torch.randn(16, 256, generator=torch.Generator().manual_seed(len(name))) * 0.04
    enc = get_method(name).quantize("w", W, QuantContext())
    W_hat = get_method(name).dequantize(enc, tuple(W.shape), torch.float32).double()
    # rebuild the per-element grid from the stored streams, independently of the method code
    s = enc.streams["scale"]
    s = (torch.from_numpy(s.astype(np.uint32) << 16).view(torch.float32) if s.dtype == np.uint16
         else torch.from_numpy(s.astype(np.float32))).double()
    per = W.numel() // s.numel()
    s = s.repeat_interleave(per).reshape(W.shape)
    z = torch.from_numpy(enc.streams["zero"].astype(np.float64)).repeat_interleave(per).reshape(W.shape) \
        if "zero" in enc.streams else torch.zeros_like(s)
    grid = spec.grid
    top, bot = (grid.qmax - z) * s, (grid.qmin - z) * s
    w = W.double()
    inside = (w <= top) & (w >= bot)
    err = (w - W_hat).abs()
    assert torch.all(err[inside] <= (s / 2 * (1 + 1e-6))[inside])
    assert torch.all((W_hat[~inside] == top[~inside]) | (W_hat[~inside] == bot[~inside]))
    q = torch.from_numpy(enc.streams["q"].astype(np.int64))
    assert int(q.min()) >= grid.qmin and int(q.max()) <= grid.qmax


@pytest.fixture(scope="module")
def calibrated():
    # mlp hidden 1088 and vocab 1100: fc, mlp.proj and tok_emb are above the keep-float threshold
    sd = reference_like_state_dict(seed=5, dim=64, layers=2, vocab=1100, mlp_mult=17)
    g = torch.Generator().manual_seed(9)
    tokens = torch.randint(0, 1100, (4, 32), generator=g)
    H = collect_hessians(calibration_model(sd), tokens, batch_seqs=2)
    return sd, H


@pytest.mark.parametrize("name", RTN_METHODS + GPTQ_METHODS + LQER_METHODS)
def test_pack_unpack_equals_method_dequantize(calibrated, name):
    sd, H = calibrated
    spec = f"{name},blocks.*.mlp.proj.weight=int6-rtn-g64"  # the 1088-wide input
    # zlib: this checks methods + container; the codecs have their own tests
    data = pgcompress.pack(sd, method=spec, context=QuantContext(H), codec="zlib")
    got = pgcompress.unpack(data)
    want = quantize(sd, spec, calib=H)
    assert list(got) == list(sd)
    for k in sd:
        assert bits_equal(got[k], want[k]), k
    for k in ("blocks.0.mlp.fc.weight", "tok_emb.weight"):
        enc = get_method(name).quantize(k, sd[k], QuantContext(H))
        assert bits_equal(got[k], get_method(name).dequantize(enc, tuple(sd[k].shape), sd[k].dtype)), k
    assert pgcompress.read_header(data)["tensors"][0] is not None


def test_gptq_tied_embedding_uses_the_head_hessian(calibrated):
    sd, H = calibrated
    assert H["tok_emb.weight"].shape == (64, 64)
    small = {k: sd[k] for k in ("tok_emb.weight", "blocks.0.mlp.fc.weight", "blocks.1.attn.c_q.weight")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning: every big tensor has a Hessian
        quantize(small, "int6-gptq", calib=H)


def test_corrupt_streams_are_format_errors():
    W = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    m = get_method("int4-rtn-asym")
    enc = m.quantize("w", W, QuantContext())
    cases = [
        {"params": {**enc.params, "bits": 9}},
        {"params": {**enc.params, "bits": 5}},  # disagrees with the name
        {"params": {**enc.params, "group": 48}},
        {"params": {**enc.params, "sym": "yes"}},
        {"streams": {**enc.streams, "q": np.full(512, 9, np.int8)}},
        {"streams": {**enc.streams, "zero": np.full(8, 100, np.int8)}},
        {"streams": {k: v for k, v in enc.streams.items() if k != "zero"}},
        {"streams": {**enc.streams, "scale": enc.streams["scale"][:4]}},
    ]
    for case in cases:
        bad = Encoded(enc.method, case.get("params", enc.params), case.get("streams", enc.streams))
        with pytest.raises(FormatError):
            m.dequantize(bad, (8, 64), torch.float32)


def test_codes_are_int8_streams_with_the_grid_range():
    W = torch.randn(8, 64, generator=torch.Generator().manual_seed(1))
    for bits in range(2, 9):
        enc = get_method(f"int{bits}-rtn").quantize("w", W, QuantContext())
        assert enc.streams["q"].dtype == np.int8
        assert np.abs(enc.streams["q"]).max() == G.Grid(bits).qmax


def test_auto_codecs_roundtrip(calibrated):
    sd, H = calibrated
    sd = {k: sd[k] for k in ("tok_emb.weight", "blocks.0.mlp.fc.weight", "blocks.0.attn_scale")}
    got = pgcompress.unpack(pgcompress.pack(sd, method="int6-gptq", context=QuantContext(H)))
    want = quantize(sd, "int6-gptq", calib=H)
    assert all(bits_equal(got[k], want[k]) for k in sd)
