"""The method/codec registries: loaded once, completely, even when first used from threads."""

from __future__ import annotations

import subprocess
import sys


def test_first_use_from_many_threads_sees_every_codec():
    """Regression: two pack threads calling codec_names() first used to see an empty registry
    (the 'loaded' flag was set before the built-ins had registered)."""
    code = (
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from pgcompress.registry import codec_names, candidate_methods\n"
        "with ThreadPoolExecutor(8) as p:\n"
        "    sizes = list(p.map(lambda _: len(codec_names()), range(8)))\n"
        "print(sizes)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    sizes = eval(out.stdout)
    assert len(set(sizes)) == 1 and sizes[0] >= 8


def test_candidates_come_from_shape_and_dtype_not_names():
    import torch

    from pgcompress.quant.base import TensorKind
    from pgcompress.registry import candidate_methods

    same = [candidate_methods(TensorKind(n, (256, 512), torch.float32, True)) for n in ("a.weight", "zz_bank")]
    assert same[0] == same[1] and "int6-gptq" in same[0] and "fp16" in same[0]
    no_h = candidate_methods(TensorKind("w", (256, 512), torch.float32, False))
    assert not any(m.endswith("-gptq") or "gptq+" in m for m in no_h) and "int4-sdclip-kauto" in no_h
    assert candidate_methods(TensorKind("ids", (300,), torch.int64)) == ["raw"]
    small = candidate_methods(TensorKind("g", (512,), torch.float32))
    assert "raw" in small and not any(m.startswith("int") for m in small)


def test_solver_candidates_span_group_sizes_and_lqer_and_all_parse():
    """Issue #17: LQER is a candidate where a Hessian exists, 64-column groups where none does; every
    candidate name is a real method that quantizes the tensor it was offered for (a group that does
    not divide the columns is not offered)."""
    import re

    import torch

    from pgcompress.quant.base import QuantContext, TensorKind
    from pgcompress.registry import candidate_methods, get_method

    with_h = candidate_methods(TensorKind("w", (64, 128), torch.float32, True))
    assert {"int2-gptq+lqer", "int6-gptq+lqer", "int8-gptq"} <= set(with_h)
    no_h = candidate_methods(TensorKind("w", (64, 128), torch.float32, False))
    assert {"int2-sdclip-kauto-g64", "int4-sdclip-kauto-g64"} <= set(no_h) and not any("gptq" in m for m in no_h)
    ragged = candidate_methods(TensorKind("w", (64, 100), torch.float32, False))
    assert not any(re.search(r"-g\d", m) for m in ragged)
    w = torch.randn(64, 128)
    X = torch.randn(400, 128)
    ctx = QuantContext({"w": X.T @ X / 400})
    for m in with_h + no_h:
        enc = get_method(m).quantize("w", w, ctx)
        back = get_method(m).dequantize(enc, (64, 128), torch.float32)
        assert back.shape == w.shape and torch.isfinite(back).all(), m
        if "lqer" in m:
            assert enc.params["lqer_rank"] == 4
        if m.endswith("-g64"):
            assert enc.params["group"] == 64
