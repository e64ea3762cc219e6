"""The leading records' lossless pipeline for integer codes, re-implemented from its description.

PR #1855 in openai/parameter-golf ("pergroup" compressor; the same steps are described in the
records that reuse it): quantized tensors are grouped by role (token embedding; attention
k, q, v, proj; MLP fc, proj - every layer's matrix of one role in one group, in layer order);
in the "hot" groups (embedding, attention q, MLP fc) each matrix's rows are put in a greedy L1
nearest-neighbour order (start at row 0, always step to the closest unused row; the order is
stored as uint16 and brotli'd); every matrix is transposed and its codes written one byte each;
each group's bytes go through ``lrzip -z -L 9`` (ZPAQ) and the rest through brotli-11. This
module is written here from that description; none of the record's code is used.

``lrzip -z`` first runs an LZ4 test and stores data it finds incompressible uncompressed, which it
does for some int6 groups; ``-T`` skips that test. Both are reported; the better of the two is
the pipeline's size.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import brotli
import numpy as np

ROLES = ("tok_emb.weight", "attn.c_k.weight", "attn.c_q.weight", "attn.c_v.weight", "attn.proj.weight",
         "mlp.fc.weight", "mlp.proj.weight")
SORTED_ROLES = {"tok_emb.weight", "attn.c_q.weight", "mlp.fc.weight"}


def l1_row_order(q: np.ndarray) -> np.ndarray:
    """Greedy nearest-neighbour row order under L1 distance, from row 0 -> [R] uint16."""
    x = q.astype(np.float32)
    free = np.ones(x.shape[0], dtype=bool)
    free[0] = False
    order = [0]
    for _ in range(x.shape[0] - 1):
        idx = np.flatnonzero(free)
        nxt = int(idx[np.argmin(np.abs(x[idx] - x[order[-1]]).sum(axis=1))])
        order.append(nxt)
        free[nxt] = False
    return np.array(order, dtype=np.uint16)


def _lrzip(data: bytes, flags: tuple[str, ...]) -> int:
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "group.bin"
        src.write_bytes(data)
        subprocess.run(["lrzip", "-z", "-L", "9", *flags, "-q", "-f", "-o", f"{src}.lrz", str(src)], check=True,
                       capture_output=True)
        return Path(f"{src}.lrz").stat().st_size


def record_pipeline(codes: dict[str, np.ndarray]) -> dict:
    """codes: name -> [out, in] integer codes -> bytes of the pipeline, per group, as the record
    runs lrzip and with -T; or why it could not run."""
    if not shutil.which("lrzip"):
        return {"bytes": None, "note": "not measured here (no lrzip binary on this machine)"}
    t = time.perf_counter()
    groups: dict[str, list[tuple[int, np.ndarray]]] = {}
    rest = []
    for name in sorted(codes):
        m = re.match(r"blocks\.(\d+)\.(.+)$", name)
        role, layer = (m.group(2), int(m.group(1))) if m else (name, 0)
        (groups.setdefault(role, []) if role in ROLES else rest).append((layer, codes[name]))
    perms = b""
    blobs = {}
    for role in ROLES:
        parts = []
        for _, q in sorted(groups.get(role, []), key=lambda item: item[0]):
            if role in SORTED_ROLES:
                order = l1_row_order(q)
                perms += order.tobytes()
                q = q[order]
            parts.append(np.ascontiguousarray(q.T).astype(np.int8).tobytes())
        if parts:
            blobs[role] = b"".join(parts)
    out = {"groups": {}, "perms_brotli": len(brotli.compress(perms, quality=11)) if perms else 0,
           "rest_brotli": len(brotli.compress(b"".join(q.astype(np.int8).tobytes() for _, q in rest),
                                              quality=11, lgwin=24)) if rest else 0}
    for label, flags in (("lrzip -z -L 9", ()), ("lrzip -z -L 9 -T", ("-T",))):
        out["groups"][label] = {role: _lrzip(blob, flags) for role, blob in blobs.items()}
        out[label] = sum(out["groups"][label].values()) + out["perms_brotli"] + out["rest_brotli"]
    out["bytes"] = min(out["lrzip -z -L 9"], out["lrzip -z -L 9 -T"])
    out["encode_s"] = time.perf_counter() - t
    return out
