"""Clip rules (MSE search, SDClip, percentile) against brute force / numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgcompress.quant import clipping
from pgcompress.quant.base import QuantContext
from pgcompress.registry import get_method


def fp16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


def sym_error(row: np.ndarray, clip: float, qmax: int) -> float:
    s = max(float(fp16(clip / qmax)), 0) or 1.0
    deq = np.clip(np.round(row / np.float32(s)), -qmax, qmax) * s
    return float(((row.astype(np.float64) - deq) ** 2).sum())


def heavy_tailed(seed, shape=(16, 128)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * torch.rand(shape, generator=g).pow(3) * 3 * 0.02


@pytest.mark.parametrize("bits", [3, 4, 6])
def test_mse_clip_is_the_best_candidate_per_row(bits):
    W = heavy_tailed(bits)
    enc = get_method(f"int{bits}-clip").quantize("w", W, QuantContext())
    qmax = 2 ** (bits - 1) - 1
    got = get_method(f"int{bits}-clip").dequantize(enc, tuple(W.shape), torch.float32).numpy().astype(np.float64)
    Wn = W.numpy()
    alphas = np.linspace(1.0, 0.3, 71)
    for r in range(W.shape[0]):
        amax = np.abs(Wn[r]).max()
        brute = min(sym_error(Wn[r], a * amax, qmax) for a in alphas)
        err = float(((Wn[r].astype(np.float64) - got[r]) ** 2).sum())
        assert err == pytest.approx(brute, rel=1e-6)
        assert err <= sym_error(Wn[r], amax, qmax) * (1 + 1e-9)  # never worse than plain RTN


@pytest.mark.parametrize("bits,k", [(6, 12.85), (8, 20.0), (5, 3.0)])
def test_sdclip_scale_is_k_std(bits, k):
    W = torch.randn(12, 256, generator=torch.Generator().manual_seed(bits)) * 0.03
    name = f"int{bits}-sdclip" + ("" if k == clipping.SDCLIP_K[bits] else f"-k{k}")
    enc = get_method(name).quantize("w", W, QuantContext())
    qmax = 2 ** (bits - 1) - 1
    want = fp16(k * W.numpy().astype(np.float64).std(axis=1) / qmax)
    assert np.allclose(enc.streams["scale"].astype(np.float32), want, rtol=1e-3, atol=0)
    assert enc.params["k"] == k


def test_sdclip_defaults_follow_the_records():
    assert clipping.SDCLIP_K[6] == 12.85 and clipping.SDCLIP_K[8] == 20.0 and clipping.SDCLIP_K[7] == 14.0


def test_sdclip_kauto_picks_the_least_error_candidate():
    W = heavy_tailed(9, (32, 128))
    enc = get_method("int4-sdclip-kauto").quantize("w", W, QuantContext())
    Wn = W.numpy()
    std = Wn.astype(np.float64).std(axis=1)

    def total(k):
        return sum(sym_error(Wn[r], np.float32(k * std[r]), 7) for r in range(len(Wn)))

    errs = {k: total(k) for k in clipping.SDCLIP_K_SEARCH}
    assert errs[enc.params["k"]] == pytest.approx(min(errs.values()), rel=1e-4)


def test_percentile_clip_matches_numpy_percentile():
    W = heavy_tailed(4, (10, 200))
    enc = get_method("int5-pct-p99.5").quantize("w", W, QuantContext())
    want = fp16(np.percentile(np.abs(W.numpy()), 99.5, axis=1) / 15)
    assert np.allclose(enc.streams["scale"].astype(np.float32), want, rtol=2e-3)
