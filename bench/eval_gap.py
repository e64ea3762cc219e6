"""`pgc eval` on the shared checkpoint and its int8-ref artifact (CPU, first 65,536 targets),
against the reference numbers in ../shared/data/README.md (the challenge's own code, CPU, bf16).

Writes bench/results/eval_gap.{md,json}. Usage: python -m bench.eval_gap [--max-tokens 65536]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.machine import machine_description

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CKPT = DATA / "checkpoints" / "ref_sp1024_9x512.pt"
RESULTS = REPO / "bench" / "results"
# data/README.md, measured with the reference script's functions (CPU, bf16, first 65,536 targets).
REFERENCE = {"raw_val_loss": 3.17251444, "raw_val_bpb": 1.82131713, "int8_zlib_val_bpb": 1.82202888,
             "int8_zlib_bytes": 13_905_647}


def pgc(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "pgcompress.cli", *args], cwd=REPO, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"pgc {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--max-tokens", type=int, default=65_536)
    args = ap.parse_args()
    common = ["--data-path", str(DATA / "sp1024"), "--tokenizer", str(DATA / "tokenizers" / "fineweb_1024_bpe.model"),
              "--max-tokens", str(args.max_tokens), "--device", "cpu", "--json"]
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(tmp) / "ref_sp1024_9x512.int8-ref.pgc"
        pgc("pack", str(CKPT), "-o", str(artifact), "--method", "int8-ref")
        raw = json.loads(pgc("eval", str(CKPT), *common))
        q = json.loads(pgc("eval", str(artifact), *common))
    gap = q["val_bpb"] - raw["val_bpb"]
    ref_gap = REFERENCE["int8_zlib_val_bpb"] - REFERENCE["raw_val_bpb"]
    out = {"max_tokens": args.max_tokens, "raw": raw, "int8_ref": q, "gap_bpb": gap, "reference": REFERENCE,
           "reference_gap_bpb": ref_gap, "cpu_count": os.cpu_count()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "eval_gap.json").write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    same_tokens = args.max_tokens == 65_536
    ref = lambda v: f"{v:.8f}" if same_tokens else "(other token count)"  # noqa: E731
    lines = [
        "# int8-ref roundtrip gap on the shared checkpoint (`pgc eval`, CPU, bf16)",
        "",
        f"Checkpoint `ref_sp1024_9x512.pt` (17,059,912 params), first {args.max_tokens:,} target tokens of "
        "`sp1024/fineweb_val_000000.bin`, seq_len 1024. Reference: data/README.md (the challenge's own code).",
        "",
        "| | bytes | val_loss (pgc) | val_bpb (pgc) | val_bpb (reference) |",
        "|---|---|---|---|---|",
        f"| raw checkpoint | {raw['artifact_bytes']:,} | {raw['val_loss']:.8f} | {raw['val_bpb']:.8f} | {ref(REFERENCE['raw_val_bpb'])} |",
        f"| int8-ref artifact (pgc) / int8+zlib (reference) | {q['artifact_bytes']:,} / {REFERENCE['int8_zlib_bytes']:,} | "
        f"{q['val_loss']:.8f} | {q['val_bpb']:.8f} | {ref(REFERENCE['int8_zlib_val_bpb'])} |",
        f"| gap | | | {gap:+.8f} | {ref_gap:+.8f} |",
        "",
        f"eval_time: raw {raw['eval_ms'] / 1000:.1f} s, artifact {q['eval_ms'] / 1000:.1f} s. Machine: {machine_description()}.",
        "Same weights after dequantization as the reference's int8 export, so the same bpb; the bytes",
        "differ because pgcompress's container and codecs replace torch.save + zlib.",
        "Re-run: `python -m bench.eval_gap`.",
    ]
    (RESULTS / "eval_gap.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
