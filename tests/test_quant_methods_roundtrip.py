"""Every grid method: error within its analytic bound; pack -> unpack equals an independent numpy
dequantization of the stored streams (read without pgcompress), bit for bit."""

from __future__ import annotations

import json
import struct
import warnings
import zlib

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


def read_zlib_artifact(data: bytes) -> list[tuple[dict, dict[str, np.ndarray]]]:
    """An independent reader for zlib-coded artifacts (struct + zlib + json + numpy only):
    [(tensor entry, {role: flat array})]."""
    hsize = struct.unpack_from("<I", data, 8)[0]
    header = json.loads(zlib.decompress(data[16:16 + hsize]))
    pos, out = 16 + hsize, []
    for t in header["tensors"]:
        streams = {}
        for st in t["streams"]:
            assert st["codec"] == "zlib"
            raw = zlib.decompress(data[pos:pos + st["size"]])
            streams[st["role"]] = np.frombuffer(raw, dtype=np.dtype(st["dtype"]).newbyteorder("<"))
            pos += st["size"]
        out.append((t, streams))
    assert pos == len(data)
    return out


def scales_f32(arr: np.ndarray, scale_dtype: str) -> np.ndarray:
    return (arr.astype(np.uint32) << 16).view(np.float32) if scale_dtype == "bf16" else arr.astype(np.float32)


def grid_reference(t: dict, st: dict[str, np.ndarray]) -> np.ndarray:
    """W_hat = (q - z) * s per row or group, in float32 as IEEE defines it; + the LQER term."""
    p = t["params"]
    out = t["shape"][0] if len(t["shape"]) >= 2 else 1
    cols = int(np.prod(t["shape"])) // out
    q = st["q"].astype(np.int32).reshape(out, cols)
    rows = q.reshape(-1, p["group"]) if p["group"] else q
    z = st["zero"].astype(np.int32)[:, None] if "zero" in st else 0
    w = ((rows - z).astype(np.float32) * scales_f32(st["scale"], p["scale_dtype"])[:, None]).reshape(out, cols)
    if "lqer_rank" in p:
        r = p["lqer_rank"]
        a = st["lqer_a"].astype(np.float32).reshape(r, out) * st["lqer_a_scale"].astype(np.float32)[:, None]
        b = st["lqer_b"].astype(np.float32).reshape(r, cols) * st["lqer_b_scale"].astype(np.float32)[:, None]
        w = w + a.T @ b
    return w.reshape(t["shape"])


@pytest.mark.parametrize("name", RTN_METHODS + GPTQ_METHODS + LQER_METHODS)
def test_unpack_equals_an_independent_dequantization_of_the_stored_streams(calibrated, name):
    sd, H = calibrated
    spec = f"{name},blocks.*.mlp.proj.weight=int6-rtn-g64"  # the 1088-wide input
    # zlib everywhere, so the streams can be read without pgcompress's decoders
    data = pgcompress.pack(sd, method=spec, context=QuantContext(H), codec="zlib")
    got = pgcompress.unpack(data)
    assert list(got) == list(sd)
    grids = 0
    for t, st in read_zlib_artifact(data):
        k = t["name"]
        assert got[k].shape == sd[k].shape
        if "bits" in t["params"]:
            grids += 1
            ref = torch.from_numpy(grid_reference(t, st))
            if "lqer_rank" in t["params"]:  # a matmul: summation order may differ from torch's
                assert torch.allclose(got[k].float(), ref.to(sd[k].dtype).float(), rtol=1e-5, atol=1e-6), k
            else:
                assert bits_equal(got[k], ref.to(sd[k].dtype)), k
            assert t["params"]["bits"] == parse_name(t["method"]).bits
        elif t["method"] in ("fp16", "fp32", "raw"):
            stored = torch.from_numpy(st["data"].astype(st["data"].dtype.newbyteorder("="))).reshape(sd[k].shape)
            want = stored.float() if t["method"] == "fp32" else stored.to(sd[k].dtype)
            assert bits_equal(got[k], want), k
    assert grids >= 3  # fc, mlp.proj, tok_emb at least went through the grid


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
