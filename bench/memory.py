"""Peak memory of packing a ~24M-parameter reference-family checkpoint with int6 GPTQ on CPU.

The model: ``GPT(GPTConfig(num_layers=10, mlp_hidden=1536))`` (10 layers, dim 512, MLP x3, vocab
1024), randomly initialised, its state_dict saved. ``pgc pack --method int6-gptq`` runs in a child
process calibrated on the shared train shards (or ``--selfgen N``); the figure is the child's peak
resident set size (ru_maxrss), which must stay under 4 GB.

    python -m bench.memory [--seqs 16] [--selfgen N]   -> bench/results/memory.md / .json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.machine import machine_description

from pgcompress.model.gpt import GPT, GPTConfig, count_params

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

SHARDS = REPO.parent / "shared" / "data" / "sp1024" / "fineweb_train_*.bin"
LIMIT_GB = 4.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seqs", type=int, default=16, help="calibration sequences from the shards")
    ap.add_argument("--selfgen", type=int, default=None, help="calibrate on N self-generated sequences instead")
    args = ap.parse_args()
    machine = machine_description()
    torch.manual_seed(0)
    model = GPT(GPTConfig(num_layers=10, mlp_hidden=1536))
    params = count_params(model)
    calib = (["--calib-selfgen", str(args.selfgen)] if args.selfgen else
             ["--calib-shards", str(SHARDS), "--calib-seqs", str(args.seqs)])
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "model.pt"
        torch.save(model.state_dict(), ckpt)
        del model
        cmd = [sys.executable, "-m", "pgcompress.cli", "pack", str(ckpt), "-o", str(Path(tmp) / "a.bin"),
               "--method", "int6-gptq", *calib, "--json"]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        seconds = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(r.stderr)
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9
        summary = json.loads(r.stdout.strip().splitlines()[-1])
    res = {"machine": machine, "params": params, "calibration": " ".join(calib[:2] + calib[2:]).replace(str(REPO.parent), ".."),
           "peak_rss_gb": round(peak_gb, 3), "seconds": round(seconds, 1), "model_bytes": summary["model_bytes"],
           "limit_gb": LIMIT_GB}
    (BENCH / "results" / "memory.json").write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
    text = (f"# Peak memory of `pgc pack --method int6-gptq` (CPU)\n\nMachine: {machine}.\n\n"
            f"Model: reference family, 10 layers, dim 512, MLP x3, vocab 1024, {params:,} parameters, random init.\n"
            f"Calibration: `{res['calibration']}`.\n\n"
            f"| peak RSS of the pack process | limit | wall time | artifact bytes |\n|---:|---:|---:|---:|\n"
            f"| {peak_gb:.2f} GB | {LIMIT_GB:.0f} GB | {seconds:.0f} s | {summary['model_bytes']:,} |\n\n"
            "Peak RSS is the child's ru_maxrss (the process's high-water mark, torch's own ~0.3 GB included).\n")
    (BENCH / "results" / "memory.md").write_text(text)
    print(text)
    assert peak_gb < LIMIT_GB, f"peak RSS {peak_gb:.2f} GB is over {LIMIT_GB} GB"


if __name__ == "__main__":
    main()
