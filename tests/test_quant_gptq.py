"""GPTQ against a small independent implementation (OBS updates with an explicit inverse
Hessian, no blocks, no Cholesky), and against RTN in Hessian-weighted error."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from pgcompress.quant import grid as G
from pgcompress.quant.base import QuantContext
from pgcompress.quant.gptq import GPTQ, hessian_error
from pgcompress.registry import get_method


def reference_gptq(W, H, scale, qmax, order, damp=0.01, group=0):
    """Straight from the GPTQ paper's equations: quantize column j, spread its error with
    delta = -err / [H^-1]_jj * H^-1_{j,:}, then drop j from H^-1 by Gaussian elimination."""
    W = W.astype(np.float64).copy()
    H = H.astype(np.float64).copy()
    H += np.eye(len(H)) * damp * np.mean(np.diag(H))
    Hinv = np.linalg.inv(H)
    Q = np.zeros_like(W)
    for j in order:
        s = scale[:, j // group if group else 0]
        q = np.clip(np.round(W[:, j] / s), -qmax, qmax)
        Q[:, j] = q
        err = (W[:, j] - q * s) / Hinv[j, j]
        W -= np.outer(err, Hinv[j, :])
        Hinv -= np.outer(Hinv[:, j], Hinv[j, :]) / Hinv[j, j]
    return Q


def correlated_layer(seed, out=24, n=96, tokens=400):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out, n, generator=g, dtype=torch.float64) * 0.05
    mix = torch.randn(n, n, generator=g, dtype=torch.float64) / n ** 0.5 + torch.eye(n, dtype=torch.float64)
    X = torch.randn(tokens, n, generator=g, dtype=torch.float64) @ mix * torch.rand(n, generator=g, dtype=torch.float64) * 2
    return W, X.T @ X


@pytest.mark.parametrize("bits,group,actorder,block", [(4, 0, True, 128), (3, 0, False, 128), (6, 32, True, 16),
                                                      (5, 0, True, 7)])
def test_same_codes_as_independent_implementation(bits, group, actorder, block):
    W, H = correlated_layer(bits + group)
    grid = G.Grid(bits, group_size=group)
    rows = G.to_rows(W.float(), group)
    qp = G.choose_qparams(grid, rows.abs().amax(dim=1))
    scale = qp.scale.reshape(W.shape[0], -1)
    codes = GPTQ(W, H, grid, blocksize=block, actorder=actorder).quantize(scale.double(), None)
    order = np.argsort(-np.diag(H.numpy()), kind="stable") if actorder else np.arange(W.shape[1])
    want = reference_gptq(W.numpy(), H.numpy(), scale.double().numpy(), grid.qmax, order, group=group)
    assert np.array_equal(codes.numpy(), want.astype(np.int8))


@pytest.mark.parametrize("bits", [3, 4, 6])
def test_lower_hessian_error_than_rtn_and_clip(bits):
    W, H = correlated_layer(100 + bits, out=32, n=128)
    W, H = W.float(), H.float()
    ctx = QuantContext({"w": H})
    err = {}
    for m in (f"int{bits}-rtn", f"int{bits}-clip", f"int{bits}-gptq"):
        meth = get_method(m)
        W_hat = meth.dequantize(meth.quantize("w", W, ctx), tuple(W.shape), torch.float32)
        err[m] = float(hessian_error(W, W_hat, H).sum())
    assert err[f"int{bits}-gptq"] < 0.8 * min(err[f"int{bits}-rtn"], err[f"int{bits}-clip"])


def test_hessian_aware_clip_never_loses_to_the_full_range_per_row():
    W, H = correlated_layer(7, out=32, n=64)
    W, H = W.float(), H.float()
    m = get_method("int4-gptq")
    W_hat = m.dequantize(m.quantize("w", W, QuantContext({"w": H})), tuple(W.shape), torch.float32)
    qp = G.choose_qparams(G.Grid(4), W.abs().amax(dim=1))
    plain = GPTQ(W, H, G.Grid(4)).quantize(qp.scale[:, None], None)
    W_plain = G.dequantize(plain, qp.scale[:, None], None)
    assert torch.all(hessian_error(W, W_hat, H) <= hessian_error(W, W_plain, H) * (1 + 1e-9))


def test_asymmetric_and_dead_inputs():
    W, H = correlated_layer(3, out=16, n=64)
    H[5, :] = 0
    H[:, 5] = 0  # an input never active in calibration
    m = get_method("int3-gptq-asym")
    enc = m.quantize("w", W.float(), QuantContext({"w": H.float()}))
    assert "zero" in enc.streams
    W_hat = m.dequantize(enc, tuple(W.shape), torch.float32)
    assert torch.isfinite(W_hat).all()
    rtn = get_method("int3-rtn-asym")
    W_rtn = rtn.dequantize(rtn.quantize("w", W.float(), QuantContext()), tuple(W.shape), torch.float32)
    assert float(hessian_error(W.float(), W_hat, H).sum()) < float(hessian_error(W.float(), W_rtn, H).sum())


def test_no_hessian_falls_back_to_mse_clip_with_a_warning():
    W = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match="no calibration"):
        enc = get_method("int5-gptq").quantize("w", W, QuantContext())
    with pytest.warns(UserWarning, match="no Hessian for 'w'"):
        get_method("int5-gptq").quantize("w", W, QuantContext({"other": torch.eye(64)}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.array_equal(enc.streams["q"], get_method("int5-clip").quantize("w", W, QuantContext()).streams["q"])
