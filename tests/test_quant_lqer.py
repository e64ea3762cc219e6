"""LQER: low-rank correction of the quantization error with quantized factors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgcompress.errors import FormatError
from pgcompress.quant import lqer
from pgcompress.quant.base import Encoded, QuantContext
from pgcompress.quant.gptq import hessian_error
from pgcompress.registry import get_method


def layer(seed, out=48, n=64, tokens=300):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out, n, generator=g) * 0.05
    X = torch.randn(tokens, n, generator=g) @ (torch.eye(n) + torch.randn(n, n, generator=g) / n ** 0.5)
    X = X * torch.rand(n, generator=g) * 2
    return W, X.T @ X


def roundtrip(name, W, H=None):
    m = get_method(name)
    enc = m.quantize("w", W, QuantContext({} if H is None else {"w": H}))
    return enc, m.dequantize(enc, tuple(W.shape), torch.float32)


@pytest.mark.parametrize("base", ["int3-rtn", "int4-gptq", "int2-clip"])
def test_lqer_lowers_the_error(base):
    W, H = layer(1)
    _, plain = roundtrip(base, W, H)
    enc, corrected = roundtrip(base + "+lqer", W, H)
    assert enc.params["lqer_rank"] == 4 and enc.params["lqer_bits"] == 4
    assert float(hessian_error(W, corrected, H).sum()) < 0.95 * float(hessian_error(W, plain, H).sum())


def test_exact_low_rank_error_is_recovered_with_fine_factors():
    # E of rank 2: an 8-bit rank-2 correction leaves a residual far below |E|
    g = torch.Generator().manual_seed(2)
    E = torch.randn(40, 2, generator=g) @ torch.randn(2, 56, generator=g)
    f = lqer.fit(E, None, rank=2, bits=8)
    C = lqer.correction(f.a_codes, f.a_scale, f.b_codes, f.b_scale)
    assert float((E - C).norm() / E.norm()) < 0.02
    # independent optimum (numpy SVD) of the unquantized rank-1 problem bounds a rank-1 fit from below
    f1 = lqer.fit(E, None, rank=1, bits=8)
    C1 = lqer.correction(f1.a_codes, f1.a_scale, f1.b_codes, f1.b_scale)
    s = np.linalg.svd(E.numpy().astype(np.float64), compute_uv=False)
    assert float((E - C1).norm()) >= s[1] * (1 - 1e-6)
    assert float((E - C1).norm()) <= s[1] * 1.05


def test_hessian_weighting_wins_in_the_hessian_norm():
    W, H = layer(3)
    E = W - get_method("int3-rtn").dequantize(get_method("int3-rtn").quantize("w", W, QuantContext()),
                                              tuple(W.shape), torch.float32)
    err = {}
    for key, h in (("plain", None), ("hessian", H)):
        f = lqer.fit(E, h, rank=4, bits=6)
        err[key] = float(hessian_error(E, lqer.correction(f.a_codes, f.a_scale, f.b_codes, f.b_scale), H).sum())
    assert err["hessian"] < err["plain"]


def test_factor_streams_and_their_validation():
    W, H = layer(4)
    enc, _ = roundtrip("int4-rtn+lqer-r3-f2", W, H)
    assert enc.streams["lqer_a"].dtype == np.int8 and enc.streams["lqer_a"].size == 3 * 48
    assert enc.streams["lqer_b"].size == 3 * 64 and enc.streams["lqer_b_scale"].dtype == np.float16
    assert np.abs(enc.streams["lqer_b"]).max() <= 1  # int2 symmetric grid: -1..1
    m = get_method("int4-rtn+lqer-r3-f2")
    bad = Encoded(enc.method, {**enc.params, "lqer_rank": 99}, enc.streams)
    with pytest.raises(FormatError):
        m.dequantize(bad, (48, 64), torch.float32)
    streams = dict(enc.streams)
    streams["lqer_b"] = np.full_like(streams["lqer_b"], 3)
    with pytest.raises(FormatError):
        m.dequantize(Encoded(enc.method, enc.params, streams), (48, 64), torch.float32)


def test_lqer_targets_pick_the_biggest_gain_per_byte():
    from pgcompress.quant.quantize import lqer_targets, quantize, with_lqer

    sd, H = {}, {}
    for i, scale in enumerate((0.01, 1.0, 0.1)):  # the same layer at three scales: the error scales with it
        W, Hi = layer(20)
        sd[f"t{i}"] = torch.cat([W] * 1400)[:65600 // 64].contiguous() * scale
        H[f"t{i}"] = Hi
    names = lqer_targets(sd, "int3-rtn", H, top=2)
    assert names == ["t1", "t2"]
    spec = with_lqer("int3-rtn", names, rank=2, bits=4)
    assert spec.startswith("t1=int3-rtn+lqer-r2-f4,t2=int3-rtn+lqer-r2-f4,")
    out = quantize(sd, spec, calib=H)
    assert set(out) == set(sd)


def test_shared_decomposition_gives_the_factors_of_a_cold_fit():
    """fit() caches the factorization of H across calls: any order of ranks gives the same factors
    as a fit with an empty cache, with and without a Hessian, and another error gets its own."""
    W, H = layer(9)
    E = W * 0.01
    keys = ("a_codes", "a_scale", "b_codes", "b_scale")
    for Hh in (H, None):
        cold = {}
        for r in (2, 8, 35):
            lqer.clear_cache()
            cold[r] = lqer.fit(E, Hh, r, 4)
        lqer.clear_cache()
        for r in (8, 2, 35, 2, 8):
            warm = lqer.fit(E, Hh, r, 4)
            assert all(torch.equal(getattr(warm, k), getattr(cold[r], k)) for k in keys), (r, Hh is None)
        E2 = layer(10)[0] * 0.01
        other = lqer.fit(E2, Hh, 8, 4)  # another error is not served the cached one
        lqer.clear_cache()
        fresh = lqer.fit(E2, Hh, 8, 4)
        assert all(torch.equal(getattr(other, k), getattr(fresh, k)) for k in keys)
        assert not torch.equal(fresh.b_codes, cold[8].b_codes)


@pytest.mark.parametrize("shape", [(48, 20), (20, 48), (32, 32)])
def test_top_singular_matches_a_full_svd(shape):
    """The Gram-matrix route gives the leading singular values and right singular vectors of a full
    SVD (vectors up to sign), tall, wide and square, and zero rows where the rank runs out."""
    g = torch.Generator().manual_seed(5)
    # distinct, well-separated leading singular values
    U, _ = torch.linalg.qr(torch.randn(shape[0], min(shape), generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(shape[1], min(shape), generator=g, dtype=torch.float64))
    s = torch.tensor([10.0, 6.0, 3.0, 1.5] + [0.1] * (min(shape) - 4), dtype=torch.float64)
    M = U @ torch.diag(s) @ V.T
    S, Vh = lqer.top_singular(M, 4)
    _, S_ref, Vh_ref = torch.linalg.svd(M, full_matrices=False)
    assert torch.allclose(S, S_ref[:4], rtol=1e-9)
    assert torch.allclose((Vh * Vh_ref[:4]).sum(1).abs(), torch.ones(4, dtype=torch.float64), atol=1e-9)
    rank2 = U[:, :2] @ torch.diag(s[:2]) @ V[:, :2].T  # past its rank: tiny values, no blown-up vectors
    S2, Vh2 = lqer.top_singular(rank2, 4)
    assert torch.allclose(S2[:2], s[:2], rtol=1e-9) and float(S2[2:].max()) < 1e-6
    assert torch.allclose((Vh2[:2] * Vh_ref[:2]).sum(1).abs(), torch.ones(2, dtype=torch.float64), atol=1e-9)
    assert float(Vh2.norm(dim=1).max()) <= 1 + 1e-9
    S0, Vh0 = lqer.top_singular(torch.zeros(shape, dtype=torch.float64), 2)
    assert torch.count_nonzero(S0) == 0 and torch.isfinite(Vh0).all()
