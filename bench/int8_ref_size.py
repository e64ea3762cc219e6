"""Size of the shared checkpoint's int8-ref artifact vs the reference's int8+zlib file.

The reference pickles its int8 dict with torch.save and compresses it with zlib-9; pgcompress
stores the same integer codes and fp16 scales (tests/test_quant_int8_ref.py shows the
roundtrip is bit-identical) in its own container with a codec chosen per stream.

    python -m bench.int8_ref_size [--ckpt PATH]   -> bench/results/int8_ref_size.md / .json
"""

from __future__ import annotations

import argparse
import io
import json
import time
import zlib
from pathlib import Path

import torch

import pgcompress
from pgcompress.quant.base import QuantContext
from pgcompress.quant.policy import MethodSpec, plan_methods
from pgcompress.registry import get_method

from bench.machine import machine_description

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CKPT = REPO.parent / "shared" / "data" / "checkpoints" / "ref_sp1024_9x512.pt"
PUBLISHED_REFERENCE_BYTES = 13_905_647  # ../shared/data/README.md, measured with the challenge's code


def reference_file_bytes(sd: dict[str, torch.Tensor]) -> int:
    """torch.save of the reference's export dict (same codes, scales, passthrough) + zlib-9."""
    quantized, scales, dtypes, passthrough, orig = {}, {}, {}, {}, {}
    plan = plan_methods(sd, MethodSpec("int8-ref"))
    for name, t in sd.items():
        enc = get_method(plan[name]).quantize(name, t, QuantContext())
        if enc.method == "int8-ref" and enc.params["scheme"] == "row":
            quantized[name] = torch.from_numpy(enc.streams["q"]).reshape(t.shape)
            scales[name] = torch.from_numpy(enc.streams["scale"])
            dtypes[name] = str(t.dtype).removeprefix("torch.")
        elif enc.method == "fp16":
            orig[name] = str(t.dtype).removeprefix("torch.")
            passthrough[name] = t.to(torch.float16)
        elif enc.method == "fp32":
            passthrough[name] = t.float()
        else:
            passthrough[name] = t
    obj = {"__quant_format__": "int8_clean_per_row_v1", "quantized": quantized, "scales": scales,
           "dtypes": dtypes, "passthrough": passthrough,
           "qmeta": {n: {"scheme": "per_row", "axis": 0} for n in quantized}, "passthrough_orig_dtypes": orig}
    buf = io.BytesIO()
    torch.save(obj, buf)
    return len(zlib.compress(buf.getvalue(), 9))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", type=Path, default=DEFAULT_CKPT)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args()
    sd = pgcompress.load_checkpoint(args.ckpt)
    rows = {"reference torch.save + zlib-9 (computed here)": reference_file_bytes(sd),
            "reference (published in data/README.md)": PUBLISHED_REFERENCE_BYTES}
    times = {}
    for label, kwargs in [("pgcompress int8-ref, codec auto", {}),
                          ("pgcompress int8-ref, codec auto --submittable", {"submittable": True}),
                          ("pgcompress int8-ref, codec zlib", {"codec": "zlib"}),
                          ("pgcompress int8-ref, codec brotli", {"codec": "brotli"})]:
        t0 = time.perf_counter()
        rows[label] = len(pgcompress.pack(sd, method="int8-ref", **kwargs))
        times[label] = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    machine = machine_description()
    ref = rows["reference torch.save + zlib-9 (computed here)"]
    lines = ["# int8-ref artifact size vs the reference int8+zlib file", "",
             f"Checkpoint: `{args.ckpt.name}` (17,059,912 parameters). Machine: {machine}.", "",
             "| file | bytes | vs reference | pack time |", "|---|---:|---:|---:|"]
    for label, n in rows.items():
        t = f"{times[label]:.1f} s" if label in times else ""
        lines.append(f"| {label} | {n:,} | {100 * (n - ref) / ref:+.2f}% | {t} |")
    lines += ["", "Same integer codes and fp16 scales as the reference (bit-identical roundtrip, "
              "tests/test_quant_int8_ref.py); the difference is the container (no pickle) and "
              "the per-stream codec choice."]
    (args.out / "int8_ref_size.md").write_text("\n".join(lines) + "\n")
    (args.out / "int8_ref_size.json").write_text(json.dumps({"machine": machine, "bytes": rows,
                                                             "pack_seconds": times}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
