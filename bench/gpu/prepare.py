"""Host side of bench/gpu_check.sh: stage the data a device run needs into one folder that `carry`
can take (the device machine gets the repo only, at most 64 MiB, and ../shared is not in it).

- ``ref_sp1024_9x512_bf16lin.safetensors``: the shared checkpoint with its 2-D fp32 linear
  weights rounded to bf16 (34 MB instead of 67 MB, which is over the carry limit on its own).
  The eval casts every linear weight to bf16 before its matmul (CastedLinear under bf16
  autocast), so this copy scores exactly as the original: bench/gpu/cuda_paths.py checks that on the
  device's CPU against data/README.md's raw val_bpb. It is not the same input for pack (GPTQ
  timing, artifacts), which is why every artifact in gpu.md is packed from this copy.
- ``sp1024/fineweb_val_000000.bin`` (the whole val shard, 2 MB) and the tokenizer;
- ``train/fineweb_train_000000.bin``: the first 262,144 train tokens (GPTQ calibration windows).

Usage: python -m bench.gpu.prepare [--dest .gpu_carry]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
TRAIN_TOKENS = 262_144


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dest", type=Path, default=REPO / ".gpu_carry")
    args = ap.parse_args()
    dest = args.dest
    (dest / "sp1024").mkdir(parents=True, exist_ok=True)
    (dest / "train").mkdir(exist_ok=True)
    sd = torch.load(DATA / "checkpoints" / "ref_sp1024_9x512.pt", map_location="cpu", weights_only=True)
    out = {}
    for k, v in sd.items():
        linear = v.ndim == 2 and v.dtype == torch.float32 and k.startswith("blocks.") and k.endswith(".weight")
        out[k] = (v.to(torch.bfloat16) if linear else v).contiguous()
    save_file(out, str(dest / "ref_sp1024_9x512_bf16lin.safetensors"))
    shutil.copyfile(DATA / "sp1024" / "fineweb_val_000000.bin", dest / "sp1024" / "fineweb_val_000000.bin")
    shutil.copyfile(DATA / "tokenizers" / "fineweb_1024_bpe.model", dest / "fineweb_1024_bpe.model")
    src = DATA / "sp1024" / "fineweb_train_000000.bin"
    header = np.fromfile(src, dtype="<i4", count=256)
    tokens = np.fromfile(src, dtype="<u2", count=TRAIN_TOKENS, offset=256 * 4)
    header = header.copy()
    header[2] = tokens.size
    with open(dest / "train" / "fineweb_train_000000.bin", "wb") as f:
        f.write(header.astype("<i4").tobytes())
        f.write(tokens.astype("<u2").tobytes())
    total = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"staged {total / 2**20:.1f} MiB in {dest}")


if __name__ == "__main__":
    main()
