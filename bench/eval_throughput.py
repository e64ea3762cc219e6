"""Eval throughput of the built-in reference model (default size, seq_len 1024, bf16 rules).

Writes bench/results/eval_throughput.{md,json}. Usage:
    python -m bench.eval_throughput [--seqs 16] [--device cpu|cuda]
CPU always; CUDA when a GPU is present (otherwise the report says it was not measured).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from pgcompress.eval.byte_tables import ByteTables
from pgcompress.eval.loop import LoopConfig, evaluate
from pgcompress.model.gpt import GPT, GPTConfig, apply_reference_dtypes, count_params

from bench.machine import cpu_name

RESULTS = Path(__file__).resolve().parent / "results"
FULL_VAL_TOKENS = 63_779_840  # official validation set, sp1024
SEQ_LEN = 1024


def measure(device: torch.device, seqs: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = apply_reference_dtypes(GPT(GPTConfig())).to(device)
    with torch.no_grad():
        for p in model.parameters():  # non-zero projections; control tensors keep their init (no denormals)
            if p.ndim == 2 and p.shape[0] > 2:
                p.normal_(0, 0.02)
    V = model.cfg.vocab_size
    tables = ByteTables(torch.ones(V, dtype=torch.int16), torch.zeros(V, dtype=torch.bool), torch.zeros(V, dtype=torch.bool))
    tokens = torch.randint(0, V, (seqs * SEQ_LEN + 1,)).to(torch.uint16)
    cfg = LoopConfig(seq_len=SEQ_LEN, batch_tokens=8 * min(seqs, 64) * SEQ_LEN)
    evaluate(model, tokens[: SEQ_LEN + 1], tables, cfg, device)  # warm-up (kernel selection, caches)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        evaluate(model, tokens, tables, cfg, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    best = min(times)
    tps = seqs * SEQ_LEN / best
    return {"device": str(device), "tokens": seqs * SEQ_LEN, "seconds_best": best, "seconds_all": times,
            "tokens_per_s": tps, "full_val_seconds": FULL_VAL_TOKENS / tps, "model_params": count_params(model),
            "batch_seqs": min(seqs, 64)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seqs", type=int, default=64, help="sequences of 1024 tokens per timed pass")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    machine = {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "torch": torch.__version__, "python": platform.python_version(),
               "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
               "load_avg_1m_before": os.getloadavg()[0]}
    runs = {"cpu": measure(torch.device("cpu"), args.seqs, args.repeats)}
    if torch.cuda.is_available():
        runs["cuda"] = measure(torch.device("cuda"), max(args.seqs, 256), args.repeats)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "eval_throughput.json").write_text(json.dumps({"machine": machine, "runs": runs}, indent=2) + "\n")

    lines = [
        "# Eval throughput (built-in reference model, 17,059,912 params, seq_len 1024, bf16 autocast)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores ({machine['torch_threads']} torch threads), "
        f"torch {machine['torch']}, Python {machine['python']}; 1-minute load average before the run "
        f"{machine['load_avg_1m_before']:.2f} (other work on a shared machine slows CPU numbers).",
        "",
        "| device | tokens timed | best time | tokens/s | full val (63,779,840 tokens), 1 device |",
        "|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        lines.append(f"| {name} | {r['tokens']:,} | {r['seconds_best']:.2f} s | {r['tokens_per_s']:,.0f} | "
                     f"{r['full_val_seconds'] / 60:.1f} min ({r['full_val_seconds']:.0f} s) |")
    if "cuda" not in runs:
        lines.append("| cuda (H100) | not measured here (no GPU lent this session) | | | |")
    lines += [
        "",
        "Standard eval (non-overlapping windows), one process, batches of up to 64 sequences as the",
        "reference uses per rank. Reference on 8xH100: about 1.4 s for the full validation set",
        "(so about 11 s on one H100). Re-run: `python -m bench.eval_throughput`.",
    ]
    (RESULTS / "eval_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
