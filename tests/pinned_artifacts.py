"""Reference artifacts built deterministically from small seeded state dicts (no shared data).

tests/test_pinned_artifacts.py compares their sha256 and per-stream codec names with values
recorded earlier, so a change to any coder, codec choice or container that alters a byte fails.
Running this file prints the current values in the form the test holds:

    PYTHONPATH=. python tests/pinned_artifacts.py
"""

from __future__ import annotations

import hashlib

import torch

import pgcompress
from pgcompress import format as fmt


def state_dict() -> dict[str, torch.Tensor]:
    """A tiny model-shaped state dict whose matrices have what the context codecs model: row and
    column spreads (a rank-1 width pattern), and in two of them column or row offsets."""
    g = torch.Generator().manual_seed(31)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    def spread(n):
        return torch.exp(0.5 * randn(n))

    # matrices over 65,536 values: smaller ones are kept as floats whatever the method
    sd = {"tok_emb.weight": 0.02 * randn(384, 192)}
    sd["blocks.0.attn.qkv.weight"] = 0.05 * spread(288)[:, None] * spread(256)[None, :] * randn(288, 256)
    w = 0.05 * spread(512)[:, None] * randn(512, 192)
    sd["blocks.0.mlp.fc.weight"] = w + 0.04 * randn(192)[None, :]  # column offsets
    w = 0.05 * spread(512)[None, :] * randn(192, 512)
    sd["blocks.0.mlp.proj.weight"] = w + 0.03 * randn(192)[:, None]  # row offsets
    sd["blocks.0.norm.weight"] = 1.0 + 0.1 * randn(192)
    sd["lm_head.bias"] = 0.01 * randn(384)
    return sd


# (label, method, codec, submittable): int8-ref, int6 grids (rtn, sdclip), a low-bit grid, fp16
# passthrough; auto choice and every forced entropy codec. Recorded first at 9b5227b, where the int6
# codes were also forced to rans-ctx and rans-ctx3 and the int3 codes to rans-ctx3 (codecs that
# rans-ctx2 has since replaced: bench/results/coder_consolidation.md has their sizes).
CASES = [
    ("int8-ref/auto", "int8-ref", "auto", False),
    ("int6-rtn/auto", "int6-rtn", "auto", False),
    ("int6-rtn/auto-submittable", "int6-rtn", "auto", True),
    ("int6-sdclip/auto", "int6-sdclip", "auto", False),
    ("int3-rtn/auto", "int3-rtn", "auto", False),
    ("fp16/auto", "fp16", "auto", False),
    ("int6-rtn/rans", "int6-rtn", "rans", False),
    ("int6-rtn/rans-ctx2", "int6-rtn", "rans-ctx2", False),
    ("int8-ref/rans-ctx2", "int8-ref", "rans-ctx2", False),
    ("int3-rtn/rans-ctx2", "int3-rtn", "rans-ctx2", False),
    ("int6-rtn/bitpack", "int6-rtn", "bitpack", False),
]


def build(method: str, codec: str, submittable: bool) -> bytes:
    return pgcompress.pack(state_dict(), method=method, codec=codec, submittable=submittable)


def stream_codecs(data: bytes) -> list[str]:
    """'tensor/role=codec' for every stream, in artifact order."""
    return [f"{t.name}/{s.role}={s.codec}" for t in fmt.parse(data).tensors for s in t.streams]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


if __name__ == "__main__":
    for label, method, codec, submittable in CASES:
        data = build(method, codec, submittable)
        print(f"    {label!r}: ({digest(data)!r}, {len(data)},")
        print("        [" + ",\n         ".join(repr(c) for c in stream_codecs(data)) + "]),")
