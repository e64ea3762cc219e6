from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_CKPT = SHARED / "data" / "checkpoints" / "ref_sp1024_9x512.pt"


def pytest_configure(config):
    """cli/ and kernels/ are pgcompress.cli and pgcompress.kernels only through an install's
    package-dir mapping (pip install -e . or pip install .). Stop before any test when they are
    missing, or when they come from another tree than pgcompress itself (a PYTHONPATH pointing at
    one checkout with another checkout installed), which would test one tree's library with the
    other's CLI and kernels."""
    import pgcompress

    pkg = Path(pgcompress.__file__).resolve().parent
    for sub in ("cli", "kernels"):
        try:
            where = Path(importlib.import_module(f"pgcompress.{sub}").__file__).resolve().parent
        except ModuleNotFoundError:
            raise pytest.UsageError(f"pgcompress.{sub} is not importable (pgcompress is {pkg}): install the "
                                    "checkout under test, pip install -e '.[dev]' (with a non-editable install, "
                                    "run `pytest`: `python -m pytest` puts the checkout's pgcompress/ first)") from None
        if where not in (pkg / sub, pkg.parent / sub):
            raise pytest.UsageError(f"pgcompress is {pkg} but pgcompress.{sub} is {where}: install the checkout "
                                    "under test (pip install -e '.[dev]') instead of pointing PYTHONPATH at it")


@pytest.fixture(scope="session")
def shared_state_dict() -> dict[str, torch.Tensor]:
    if not SHARED_CKPT.is_file():
        pytest.fail(f"{SHARED_CKPT} is missing: tests need ../shared beside the repository")
    return torch.load(SHARED_CKPT, map_location="cpu", weights_only=True)


def reference_like_state_dict(seed: int = 0, dim: int = 64, layers: int = 2, vocab: int = 128,
                              heads: int = 4, kv_heads: int = 2, mlp_mult: int = 2) -> dict[str, torch.Tensor]:
    """Random weights with the reference model's key names, shapes and saved dtypes."""
    g = torch.Generator().manual_seed(seed)
    head_dim = dim // heads
    sd = {"tok_emb.weight": (torch.randn(vocab, dim, generator=g) * 0.02).to(torch.bfloat16)}
    enc = layers // 2
    sd["skip_weights"] = torch.ones(min(enc, layers - enc), dim)
    for i in range(layers):
        p = f"blocks.{i}."
        sd[p + "attn_scale"] = torch.rand(dim, generator=g)
        sd[p + "mlp_scale"] = torch.rand(dim, generator=g)
        sd[p + "resid_mix"] = torch.randn(2, dim, generator=g)
        sd[p + "attn.q_gain"] = torch.full((heads,), 1.5)
        sd[p + "attn.c_q.weight"] = torch.randn(dim, dim, generator=g) * 0.05
        sd[p + "attn.c_k.weight"] = torch.randn(kv_heads * head_dim, dim, generator=g) * 0.05
        sd[p + "attn.c_v.weight"] = torch.randn(kv_heads * head_dim, dim, generator=g) * 0.05
        sd[p + "attn.proj.weight"] = torch.randn(dim, dim, generator=g) * 0.05
        sd[p + "mlp.fc.weight"] = torch.randn(mlp_mult * dim, dim, generator=g) * 0.05
        sd[p + "mlp.proj.weight"] = torch.randn(dim, mlp_mult * dim, generator=g) * 0.05
    return sd


@pytest.fixture(scope="session")
def shared_artifact(shared_state_dict) -> bytes:
    """The shared checkpoint packed with int8-ref (auto codec choice), once per session."""
    import pgcompress

    return pgcompress.pack(shared_state_dict, method="int8-ref")
