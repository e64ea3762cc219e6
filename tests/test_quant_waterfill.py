"""Waterfilled columns (wf): against GPTQ's codes when every step is equal, against RTN when H = I,
against an independent back-substitution (WaterSIC's ZSIC on the lower Cholesky factor, written
from the paper's equations, float64), and through pack -> unpack -> the generated decoder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import pgcompress
from conftest import reference_like_state_dict
from pgcompress.errors import FormatError, MethodError
from pgcompress.quant import grid as G
from pgcompress.quant.base import Encoded, QuantContext
from pgcompress.quant.gptq import GPTQ, hessian_error
from pgcompress.quant.waterfill import (E_MAX, ZMAX, encode_rungs, log_scale, nominal_step, parse_name, waterfill,
                                        wf_candidates, wf_dequantize)
from pgcompress.quant.base import TensorKind
from pgcompress.registry import get_method
from pgcompress.submission import isolated
from pgcompress.submission.decoder import build_decoder


def correlated_layer(seed, out=24, n=64, tokens=400, spread=2.0):
    """W [out, n] and H = X^T X from inputs with unequal, correlated variances."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out, n, generator=g) * 0.05
    mix = torch.randn(n, n, generator=g) / n ** 0.5 + torch.eye(n)
    X = torch.randn(tokens, n, generator=g) @ mix * torch.exp(spread * torch.randn(n, generator=g))
    return W, X.T @ X


def test_equal_steps_give_gptq_codes():
    """All column steps forced equal (no shrinkage, step on the scale grid): the recursion is GPTQ's."""
    W, H = correlated_layer(1)
    c = 2.0 ** -6  # exactly a stored scale (2^(e/32)), so reconstruction = code * c in both
    (rung,) = waterfill(W, H, [0], col_steps=torch.ones(W.shape[1]), cs=[c], shrink=False, cap=None)
    grid = G.Grid(8)
    want = GPTQ(W, H, grid).quantize(torch.full((W.shape[0], 1), c), None)
    assert int(want.abs().max()) < grid.qmax  # the grid's clamp never bound: same problem for both
    assert torch.equal(rung.z, want.to(torch.int64))


def test_identity_hessian_gives_rtn():
    """H = I: no error feedback, and every column's step is c / sqrt(1 + 1% damping)."""
    g = torch.Generator().manual_seed(2)
    W = torch.randn(16, 40, generator=g)
    c = 0.1
    (rung,) = waterfill(W, torch.eye(40), [0], cs=[c], shrink=False, cap=None)
    want = np.round(W.double().numpy() / (c / math.sqrt(1.01)))
    assert np.array_equal(rung.z.numpy(), want)


def zsic_reference(W, H, c, damp=0.01):
    """WaterSIC's successive cancellation, written independently: act-order permutation, damped H,
    H = R R^T with R UPPER triangular (a lower Cholesky factor of the reversed matrix, reversed),
    so (E R)[:, k] depends on columns 0..k only; column k targets t = (W R)[:, k] minus what the
    columns before it already reconstruct, and is rounded on the spacing c / R_kk (stored on the
    2^(e/32) grid). Returns codes [out, n] (W's column order) and sum_k |t_k - w_hat_k R_kk|^2."""
    W, H = W.double().numpy(), H.double().numpy().copy()
    n = H.shape[0]
    order = np.argsort(-np.diag(H), kind="stable")
    Hp = H[np.ix_(order, order)] + np.eye(n) * damp * np.mean(np.diag(H))
    J = np.eye(n)[::-1]
    R = J @ np.linalg.cholesky(J @ Hp @ J) @ J  # upper, Hp = R R^T
    assert np.allclose(R, np.triu(R)) and np.allclose(R @ R.T, Hp)
    Wp = W[:, order]
    T = Wp @ R
    Wh = np.zeros_like(Wp)
    Z = np.zeros_like(Wp)
    resid = 0.0
    for k in range(n):
        t = T[:, k] - Wh[:, :k] @ R[:k, k]
        z = np.round(t / c)
        step = 2.0 ** (np.round(32 * np.log2(c / R[k, k])) / 32)
        Wh[:, k] = z * step
        Z[:, k] = z
        resid += float(np.sum((t - Wh[:, k] * R[k, k]) ** 2))
    codes = np.zeros_like(Z)
    codes[:, order] = Z
    return codes, resid, Hp, order


@pytest.mark.parametrize("seed,out,n", [(3, 3, 4), (4, 5, 7), (5, 8, 12)])
def test_tiny_matrices_match_an_independent_back_substitution(seed, out, n):
    W, H = correlated_layer(seed, out=out, n=n, tokens=50, spread=1.0)
    W, H = W.double(), H.double()
    c = 0.02
    (rung,) = waterfill(W, H, [0], cs=[c], shrink=False, cap=None)
    codes, resid, Hp, order = zsic_reference(W, H, c)
    assert np.array_equal(rung.z.numpy(), codes)
    W_hat = wf_dequantize("wf1", {"slices": 1, "rows": False}, encode_rungs("wf1", [rung]).streams, (out, n),
                          torch.float64)
    Hd = torch.from_numpy(Hp)[torch.argsort(torch.from_numpy(order))][:, torch.argsort(torch.from_numpy(order))]
    err = float(hessian_error(W, W_hat, Hd).sum())
    assert err == pytest.approx(resid, rel=1e-4)


def test_less_output_error_than_gptq_at_equal_coded_bytes():
    """The point of the family: on an anisotropic H, at the same measured bytes, less tr(E H E^T)."""
    from pgcompress.budget.rate import RateMeter

    W, H = correlated_layer(6, out=64, n=128, tokens=2000, spread=1.5)
    meter = RateMeter()
    ctx = QuantContext({"w": H})
    gptq = []
    for b in (3, 4, 5):
        enc = get_method(f"int{b}-gptq").quantize("w", W, ctx)
        W_hat = get_method(enc.method).dequantize(enc, tuple(W.shape), torch.float32)
        gptq.append((meter.encoded_bytes("w", W.shape, enc), float(hessian_error(W, W_hat, H).sum())))
    enc = get_method("wf4").quantize("w", W, ctx)
    rate = meter.encoded_bytes("w", W.shape, enc)
    err = float(hessian_error(W, get_method("wf4").dequantize(enc, tuple(W.shape), torch.float32), H).sum())
    # GPTQ's error at wf's rate, interpolated in log error between its neighbouring bit widths
    (r0, e0), (r1, e1) = next((a, b) for a, b in zip(gptq, gptq[1:]) if a[0] <= rate <= b[0])
    at_rate = math.exp(math.log(e0) + (rate - r0) / (r1 - r0) * (math.log(e1) - math.log(e0)))
    assert err < 0.8 * at_rate


def test_shrinkage_lowers_the_error_at_low_rate():
    W, H = correlated_layer(7, out=48, n=64)
    errs = []
    for shrink in (False, True):
        (rung,) = waterfill(W, H, [1.5], shrink=shrink)
        enc = encode_rungs("wf1.5", [rung])
        W_hat = wf_dequantize("wf1.5", enc.params, enc.streams, tuple(W.shape), torch.float32)
        errs.append(float(hessian_error(W, W_hat, H).sum()))
    assert errs[1] < errs[0]


def test_kfac_rows_need_sensitivities_and_use_them():
    W, H = correlated_layer(8)
    with pytest.raises(MethodError, match="output sensitivity"):
        get_method("wf3-kfac").quantize("w", W, QuantContext({"w": H}))
    a = torch.exp(torch.linspace(-3, 3, W.shape[0]))
    enc = get_method("wf3-kfac").quantize("w", W, QuantContext({"w": H}, out_sens={"w": a}))
    assert "row" in enc.streams and enc.params["rows"] is True
    rows = log_scale(enc.streams["row"])
    assert rows[0] > rows[-1]  # the more sensitive row gets the finer step
    # At one spacing c, rows stepped by a^-1/2 keep the sensitivity-weighted error (c^2/12 per weight
    # times mean(a), at high rate) and spend 0.5 * mean(log2(a / mean a)) < 0 bits per weight less.
    from pgcompress.budget.rate import RateMeter

    perm, U = GPTQ(W, H, grid=None).order()
    u = torch.empty(W.shape[1])
    u[perm] = U.diagonal()
    meter, c = RateMeter(), nominal_step(W, u, torch.ones(W.shape[0]), 4.0)
    out = {}
    for label, sens in (("plain", None), ("kfac", a)):
        (rung,) = waterfill(W, H, [0], a=sens, cs=[c], shrink=False, cap=None)
        enc = encode_rungs("wf3", [rung])
        W_hat = wf_dequantize("wf3", enc.params, enc.streams, tuple(W.shape), torch.float32)
        out[label] = (meter.encoded_bytes("w", W.shape, enc), float((a.double() * hessian_error(W, W_hat, H)).sum()))
    assert out["kfac"][0] < out["plain"][0]
    assert out["kfac"][1] < 1.15 * out["plain"][1]


def test_log_scale_is_exact_powers():
    e = np.arange(-E_MAX, E_MAX + 1, 7)
    want = np.array([np.float32(2.0 ** (k / 32)) for k in e], dtype=np.float32)
    assert np.array_equal(log_scale(e), want)


def test_names_and_candidates():
    assert parse_name("wf3.25-kfac").bits == 3.25 and parse_name("wf3.25-kfac").kfac
    for bad in ("wf", "wf0.1", "wf13", "wf3-rows", "wf-3"):
        with pytest.raises(MethodError):
            parse_name(bad)
    assert wf_candidates(TensorKind("w", (64, 64), torch.float32, has_hessian=False)) == []
    names = wf_candidates(TensorKind("w", (64, 64), torch.float32, has_hessian=True, has_sensitivity=True))
    assert names and all(n.endswith("-kfac") for n in names)


def test_banks_are_quantized_slice_by_slice():
    W0, H0 = correlated_layer(9, out=8, n=16)
    W1, H1 = correlated_layer(10, out=8, n=16)
    bank = torch.stack([W0, W1 * 10])  # [2, 8, 16]
    enc = get_method("wf4").quantize("bank", bank, QuantContext({"bank[0]": H0, "bank[1]": H1}))
    assert enc.params["slices"] == 2 and enc.streams["col"].size == 32
    alone = get_method("wf4").quantize("w", W1 * 10, QuantContext({"w": H1}))
    assert np.array_equal(enc.streams["z"].reshape(2, 8, 16)[1], alone.streams["z"].reshape(8, 16))


def test_pack_unpack_and_generated_decoder_are_bit_exact():
    sd = reference_like_state_dict(seed=3, dim=64, layers=2, vocab=300)
    g = torch.Generator().manual_seed(0)
    hs = {n: (lambda x: x.T @ x)(torch.randn(256, w.shape[1], generator=g) * torch.rand(w.shape[1], generator=g))
          for n, w in sd.items() if w.ndim == 2}
    spec = "wf3.5,blocks.*.weight=wf3.5"  # the small test matrices too (the reference keeps them float)
    data = pgcompress.pack(sd, method=spec, submittable=True, context=QuantContext(hs))
    again = pgcompress.pack(sd, method=spec, submittable=True, context=QuantContext(hs))
    assert data == again
    restored = pgcompress.unpack(data)
    decoded = isolated.run_isolated(build_decoder(data), data)[0]
    assert list(decoded) == list(restored)
    for k in restored:
        assert torch.equal(decoded[k].view(-1).view(torch.uint8), restored[k].contiguous().view(-1).view(torch.uint8)), k
    assert sum(t.method == "wf3.5" for t in pgcompress.format.parse(data).tensors) == 12  # 6 matrices a block


def good_streams():
    W, H = correlated_layer(11, out=6, n=10)
    return encode_rungs("wf3", waterfill(W, H, [3]))


@pytest.mark.parametrize("mutate,match", [
    (lambda p, s: p.update(slices=4), "params"),  # 6 rows do not split into 4 slices
    (lambda p, s: p.update(rows="yes"), "params"),
    (lambda p, s: s.update(z=s["z"].astype(np.int32)), "int8 or int16"),
    (lambda p, s: s.update(z=np.full(60, ZMAX + 1, np.int16)), "outside"),
    (lambda p, s: s.update(z=s["z"][:-1]), "expected"),
    (lambda p, s: s.update(col=np.full(10, E_MAX + 1, np.int16)), "outside"),
    (lambda p, s: s.update(col=s["col"].astype(np.float16)), "expected"),
    (lambda p, s: s.update(row=np.zeros(6, np.int16)), "row"),
    (lambda p, s: (p.update(rows=True)), "missing"),
])
def test_hostile_side_information_is_refused(mutate, match):
    enc = good_streams()
    params, streams = dict(enc.params), dict(enc.streams)
    mutate(params, streams)
    with pytest.raises(FormatError, match=match):
        wf_dequantize("wf3", params, streams, (6, 10), torch.float32)


def test_hostile_side_information_is_refused_in_the_generated_decoder():
    enc = good_streams()
    src = build_decoder_for_wf()
    ns = {}
    exec(compile(src, "d.py", "exec"), ns)
    bad = dict(enc.streams, col=np.full(10, -E_MAX - 5, np.int16))
    with pytest.raises(ValueError, match="outside"):
        ns["METHODS"]["wf3"]("wf3", enc.params, bad, (6, 10), torch.float32)
    good = ns["METHODS"]["wf3"]("wf3", enc.params, dict(enc.streams), (6, 10), torch.float32)
    assert torch.equal(good, wf_dequantize("wf3", enc.params, dict(enc.streams), (6, 10), torch.float32))


def build_decoder_for_wf() -> str:
    from pgcompress.submission.decoder import build_decoder_for

    return build_decoder_for(["raw"], ["wf3"], minify=False)


def test_encoded_is_plain_data():
    enc = good_streams()
    assert isinstance(enc, Encoded) and set(enc.params) == {"slices", "rows"}
    assert enc.streams["z"].dtype in (np.int8, np.int16) and enc.streams["col"].dtype == np.int16


def test_pack_with_a_kfac_method_calibrates_sensitivities(tmp_path):
    """`pgc pack --method wf3-kfac` gets output sensitivities from its calibration (a backward pass)."""
    from pgcompress.quant.calibration import CalibConfig
    from pgcompress.quant.quantize import context_for

    sd = reference_like_state_dict(seed=4, dim=64, layers=2, vocab=128)
    ctx = context_for(sd, "int8-ref,blocks.*.weight=wf3-kfac", CalibConfig(selfgen=2, seq_len=32))
    assert "blocks.0.attn.c_q.weight" in ctx.out_sens and "blocks.0.attn.c_q.weight" in ctx.hessians
    assert not context_for(sd, "int8-ref,blocks.*.weight=wf3", CalibConfig(selfgen=2, seq_len=32)).out_sens
