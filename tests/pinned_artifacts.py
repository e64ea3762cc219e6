"""Reference artifacts built deterministically from small seeded state dicts (no shared data).

tests/test_pinned_artifacts.py compares their sha256 and per-stream codec names with values
recorded earlier, so a change to any coder, codec choice or container that alters a byte fails.
Running this file prints the current values in the form the test holds:

    PYTHONPATH=. python tests/pinned_artifacts.py
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch

import pgcompress
from pgcompress import format as fmt
from pgcompress.registry import get_codec


def state_dict() -> dict[str, torch.Tensor]:
    """A tiny model-shaped state dict whose matrices have what the context codecs model: row and
    column spreads (a rank-1 width pattern), and in two of them column or row offsets."""
    g = torch.Generator().manual_seed(31)

    # Integer draws and exact arithmetic only, so every CPU builds the same floats: torch.randn's
    # vectorized sampler (and exp) differ in the last bit between AVX2 and AVX-512 machines, which
    # moved the fp16 case by 3 B between an AMD EPYC and a Xeon.
    def randn(*shape):
        # Irwin-Hall: 12 uniform integers in [0, 4096) summed and centred have standard deviation 4096
        u = torch.randint(0, 4096, (12, *shape), generator=g, dtype=torch.int64).sum(0) - 12 * 2048
        return (u.to(torch.float64) / 4096).to(torch.float32)

    def spread(n):  # widths between 1/2 and 2 in eighth-octave-ish dyadic steps
        levels = torch.tensor([0.5, 0.625, 0.75, 0.875, 1.0, 1.25, 1.5, 1.75, 2.0])
        return levels[torch.randint(0, len(levels), (n,), generator=g)]

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
# every stream raw: the container's own bytes (preamble, header, layout), pinned whole
RAW_CASE = ("int6-rtn/raw", "int6-rtn", "raw", False)


def build(method: str, codec: str, submittable: bool) -> bytes:
    return pgcompress.pack(state_dict(), method=method, codec=codec, submittable=submittable)


def stream_codecs(data: bytes) -> list[str]:
    """'tensor/role=codec' for every stream, in artifact order."""
    return [f"{t.name}/{s.role}={s.codec}" for t in fmt.parse(data).tensors for s in t.streams]


def digest(data: bytes) -> str:
    """sha256 over the artifact as pgcompress writes it: each tensor's entry (name, shape, dtype,
    method, params) and each stream's role, codec, info and blob - except that a blob a third-party
    library compressed (zlib, lzma, brotli; ``Codec.bytes_only`` but raw) counts by its decoded
    values: brotli 1.1 and 1.2 write different bytes for the same input, and the pins must hold for
    every version pyproject.toml accepts. ``container_digest`` pins the container's own bytes."""
    h = hashlib.sha256()
    for t in fmt.parse(data).tensors:
        h.update(json.dumps([t.name, list(t.shape), t.dtype, t.method, t.params], sort_keys=True).encode())
        for s in t.streams:
            blob = bytes(data[s.offset:s.offset + s.size])
            codec = get_codec(s.codec)
            if third_party(s.codec):
                blob = np.ascontiguousarray(codec.decode(blob, s.info)).tobytes()
            i = s.info
            h.update(json.dumps([s.role, s.codec, i.dtype, i.count, i.lo, i.hi]).encode() + blob)
    return h.hexdigest()


def own_bytes(data: bytes) -> int:
    """Bytes of the streams pgcompress's own coders wrote (the rest depend on library versions)."""
    return sum(s.size for t in fmt.parse(data).tensors for s in t.streams if not third_party(s.codec))


def third_party(codec: str) -> bool:
    return get_codec(codec).bytes_only and codec != "raw"


def container_digest(data: bytes) -> str:
    """sha256 of the whole file: for artifacts whose every stream is raw or pgcompress-coded."""
    return hashlib.sha256(data).hexdigest()


if __name__ == "__main__":
    print(f"    container: {container_digest(build(*RAW_CASE[1:]))!r}")
    for label, method, codec, submittable in CASES:
        data = build(method, codec, submittable)
        print(f"    {label!r}: ({digest(data)!r}, {own_bytes(data)},")
        print("        [" + ",\n         ".join(repr(c) for c in stream_codecs(data)) + "]),")
