"""The submission decoder for the shared checkpoint's artifacts: its size and its decode time.

For each method: pack with --submittable, generate the decoder (`pgc decoder`), wrap it the way
records count code, then run it in a child process where pgcompress, zstandard and the minifier
cannot be imported (a submission has only torch, numpy, brotli and the standard library), check
that it returns `unpack`'s state dict bit for bit, and time `decode(data)` (best of 3, CPU).

    python -m bench.decoder   -> bench/results/decoder.md / .json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import pgcompress
from pgcompress.submission.decoder import build_decoder
from pgcompress.submission.isolated import run_isolated
from pgcompress.submission.wrap import wrap_source

from bench.machine import machine_description

REPO = Path(__file__).resolve().parents[1]
CKPT = REPO.parent / "shared" / "data" / "checkpoints" / "ref_sp1024_9x512.pt"
METHODS = ["int8-ref", "int6-rtn"]


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    sd = pgcompress.load_checkpoint(CKPT)
    machine = machine_description()
    rows = []
    for method in METHODS:
        data = pgcompress.pack(sd, method=method, submittable=True)
        src = build_decoder(data)
        got, seconds = run_isolated(src, data, repeats=3)
        want = pgcompress.unpack(data)
        exact = list(got) == list(want) and all(
            torch.equal(got[k].reshape(-1).view(torch.uint8), want[k].reshape(-1).view(torch.uint8)) for k in want)
        rows.append({"method": method, "artifact_bytes": len(data), "decoder_bytes": len(src.encode()),
                     "decoder_wrapped_bytes": wrap_source(src, "decode_artifact.py").counted_bytes,
                     "decode_s": seconds, "bit_exact": exact})
        print(rows[-1], flush=True)
    lines = ["# Submission decoder: size and decode time (shared checkpoint)", "",
             f"Machine: {machine}. Decode: best of 3, one torch thread, in a child process where "
             "pgcompress, zstandard and python-minifier cannot be imported.", "",
             "| method | artifact bytes | decoder bytes (minified) | decoder bytes (wrapped alone) | decode s | same as unpack |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['artifact_bytes']:,} | {r['decoder_bytes']:,} | "
                     f"{r['decoder_wrapped_bytes']:,} | {r['decode_s']:.2f} | {'bit for bit' if r['bit_exact'] else 'NO'} |")
    lines += ["", "Inside a submission the decoder sits in train_gpt.py and is wrapped together with it "
              "(that combined figure is not measured here). Target: decode under 2 s."]
    out = REPO / "bench" / "results"
    (out / "decoder.md").write_text("\n".join(lines) + "\n")
    (out / "decoder.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
