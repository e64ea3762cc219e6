"""The CUDA paths that CI never runs (issue #20, item 6), on one GPU:

1. ``pgc eval --device cuda`` (bf16 autocast, as the reference) of the staged checkpoint and of
   its int8-ref artifact, against the reference's own eval (``eval_val`` + ``build_model`` of
   examples/qat/train_gpt.py, the reference script's structure) on the same GPU and tokens;
2. the CPU-vs-GPU difference: the same ``pgc eval`` on this machine's CPU;
3. GPTQ calibration + quantization time on one GPU (int6-gptq, 64 x 1024 calibration tokens);
4. eval tokens per second on one GPU (``pgc eval`` over the whole staged val shard).

Inputs are what bench/gpu/prepare.py stages (default .gpu_carry/). Writes DIR/gpu.{md,json}.
Usage: python -m bench.gpu.cuda_paths [--carry .gpu_carry] [--out DIR] [--max-tokens 65536]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.machine import machine_description

REPO = Path(__file__).resolve().parents[2]

# ../shared/data/README.md: the reference script's own functions on CPU, first 65,536 targets, bf16
README_RAW_BPB = 1.82131713


def pgc_eval(path: Path, carry: Path, device: str, max_tokens: int | None) -> dict:
    cmd = [sys.executable, "-m", "pgcompress.cli", "eval", str(path), "--device", device, "--json",
           "--data-path", str(carry / "sp1024"), "--tokenizer", str(carry / "fineweb_1024_bpe.model")]
    if max_tokens:
        cmd += ["--max-tokens", str(max_tokens)]
    t0 = time.perf_counter()
    # not from the repo root: there ./pgcompress (without cli/ and kernels/) would shadow the package
    r = subprocess.run(cmd, cwd="/", capture_output=True, text=True)
    if r.returncode:
        return {"error": r.stderr.strip()[-500:]}
    return {**json.loads(r.stdout), "wall_s": time.perf_counter() - t0}


def reference_eval(state_dict: dict, carry: Path, max_tokens: int, device: torch.device) -> dict:
    """examples/qat/train_gpt.py's eval_val on CUDA: its model, dtypes, batch split and bpb."""
    os.environ.update(DATA_PATH=str(carry / "sp1024"), TOKENIZER_PATH=str(carry / "fineweb_1024_bpe.model"))
    spec = importlib.util.spec_from_file_location("ref_train_gpt", REPO / "examples" / "qat" / "train_gpt.py")
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    import sentencepiece as spm

    h = ref.Hyperparameters()
    luts = tuple(t.to(device) for t in ref.build_sentencepiece_luts(spm.SentencePieceProcessor(model_file=h.tokenizer_path),
                                                                     h.vocab_size))
    val = ref.load_data_shard(str(carry / "sp1024" / "fineweb_val_000000.bin"))[: max_tokens + 1]
    val = val[: ((val.numel() - 1) // h.train_seq_len) * h.train_seq_len + 1]
    model = ref.build_model(h, device)
    model.load_state_dict({k: v.to(device) for k, v in state_dict.items()}, strict=True)
    sync(device)
    t0 = time.perf_counter()
    loss, bpb = ref.eval_val(h, model, device, val, luts)
    sync(device)
    return {"val_loss": loss, "val_bpb": bpb, "eval_ms": 1e3 * (time.perf_counter() - t0), "token_count": val.numel() - 1}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def gptq_timing(sd: dict, carry: Path, device: torch.device, seqs: int) -> dict:
    import pgcompress
    from pgcompress.quant.base import QuantContext
    from pgcompress.quant.calibration import CalibConfig, calibrate

    sync(device)
    t0 = time.perf_counter()
    H = calibrate(sd, CalibConfig(shards=str(carry / "train" / "fineweb_train_*.bin"), seqs=seqs, device=device.type))
    sync(device)
    t1 = time.perf_counter()
    result = pgcompress.pack_report(sd, method="int6-gptq", codec="zlib", context=QuantContext(H, device=device.type))
    t2 = time.perf_counter()
    return {"calibration_s": t1 - t0, "gptq_pack_s": t2 - t1, "total_s": t2 - t0, "artifact_bytes": len(result.data),
            "calib_seqs": seqs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--carry", type=Path, default=REPO / ".gpu_carry")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--max-tokens", type=int, default=65_536)
    ap.add_argument("--skip-gptq", action="store_true")
    ap.add_argument("--calib-seqs", type=int, default=64, help="GPTQ calibration sequences of 1024 tokens")
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the same steps (small --max-tokens), to "
                                                     "check the script before spending device time")
    args = ap.parse_args()
    args.carry, args.out = args.carry.resolve(), args.out.resolve()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench.gpu.cuda_paths needs a CUDA device (or --device cpu for a dry run)")
    import pgcompress
    from safetensors.torch import load_file

    ckpt = args.carry / "ref_sp1024_9x512_bf16lin.safetensors"
    sd = load_file(str(ckpt))
    art = args.out / "int8ref.pgc"
    art.parent.mkdir(parents=True, exist_ok=True)
    art.write_bytes(pgcompress.pack(sd, method="int8-ref", codec="zlib"))
    res = {"machine": machine_description(), "device": str(dev), "max_tokens": args.max_tokens, "runs": {}}
    runs = res["runs"]
    for label, path in (("raw", ckpt), ("int8-ref+zlib", art)):
        runs[f"pgc eval cuda, {label}"] = pgc_eval(path, args.carry, dev.type, args.max_tokens)
        runs[f"pgc eval cpu, {label}"] = pgc_eval(path, args.carry, "cpu", args.max_tokens)
    unpacked = pgcompress.unpack(art.read_bytes())
    for label, state in (("raw", sd), ("int8-ref+zlib", unpacked)):
        try:
            runs[f"reference eval_val cuda, {label}"] = reference_eval(state, args.carry, args.max_tokens, dev)
        except Exception as e:
            runs[f"reference eval_val cuda, {label}"] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    full = pgc_eval(ckpt, args.carry, dev.type, None if dev.type == "cuda" else 4 * args.max_tokens)  # whole shard
    if "error" not in full:
        full["tokens_per_s"] = full["token_count"] / (full["eval_ms"] / 1e3)
    runs["pgc eval cuda, raw, whole val shard"] = full
    if not args.skip_gptq:
        try:
            res["gptq"] = gptq_timing(sd, args.carry, dev, args.calib_seqs)
        except Exception as e:
            res["gptq"] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    art.unlink()
    (args.out / "gpu.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "gpu.md").write_text("\n".join(report(res)) + "\n")
    print((args.out / "gpu.md").read_text())


def report(res: dict) -> list[str]:
    runs = res["runs"]
    lines = ["# CUDA paths: pgc eval on one GPU, CPU vs GPU, GPTQ time, eval throughput", "",
             f"Machine: {res['machine']}." + ("" if res["device"] == "cuda" else
                                              f" DRY RUN on {res['device']}: rows labelled cuda ran on it."), "",
             "Weights: the shared checkpoint with its linear weights stored in bf16 (bench/gpu/prepare.py; it "
             "scores exactly as the fp32 original because every linear weight is cast to bf16 before its "
             "matmul) and an int8-ref + zlib artifact packed from it on this machine.", "",
             f"## val_bpb, first {res['max_tokens']:,} target tokens, seq_len 1024, bf16 autocast", "",
             "| run | val_loss | val_bpb | eval time | note |", "|---|---|---|---|---|"]
    for name, r in runs.items():
        if "whole val shard" in name:
            continue
        if "error" in r:
            lines.append(f"| {name} | | | | failed: {r['error'][:200]} |")
            continue
        lines.append(f"| {name} | {r['val_loss']:.8f} | {r['val_bpb']:.8f} | {r['eval_ms']:.0f} ms | |")
    pairs = [("pgc eval cuda, raw", "reference eval_val cuda, raw"),
             ("pgc eval cuda, int8-ref+zlib", "reference eval_val cuda, int8-ref+zlib"),
             ("pgc eval cuda, raw", "pgc eval cpu, raw"), ("pgc eval cuda, int8-ref+zlib", "pgc eval cpu, int8-ref+zlib")]
    lines += ["", "| difference | val_bpb |", "|---|---|"]
    for a, b in pairs:
        if "val_bpb" in runs.get(a, {}) and "val_bpb" in runs.get(b, {}):
            lines.append(f"| {a} minus {b} | {runs[a]['val_bpb'] - runs[b]['val_bpb']:+.3e} |")
    cpu_raw = runs.get("pgc eval cpu, raw", {})
    if "val_bpb" in cpu_raw and res["max_tokens"] == 65_536:
        lines.append(f"| pgc eval cpu, raw, minus data/README.md's reference CPU number ({README_RAW_BPB}) | "
                     f"{cpu_raw['val_bpb'] - README_RAW_BPB:+.3e} |")
    full = runs.get("pgc eval cuda, raw, whole val shard", {})
    lines += ["", "## Eval throughput, one GPU", ""]
    if "tokens_per_s" in full:
        lines.append(f"`pgc eval --device cuda` over the whole staged val shard ({full['token_count']:,} targets): "
                     f"{full['eval_ms']:.0f} ms in the loop, {full['tokens_per_s']:,.0f} tokens/s "
                     f"({full['wall_s']:.1f} s wall for the command, start-up and loading included).")
    else:
        lines.append(f"failed: {full.get('error', 'not run')[:300]}")
    g = res.get("gptq")
    lines += ["", "## GPTQ on one GPU (int6-gptq, calibration windows from the staged train slice)", ""]
    if g is None:
        lines.append("not run (--skip-gptq)")
    elif "error" in g:
        lines.append(f"failed: {g['error']}")
    else:
        lines.append(f"{g['calib_seqs']} x 1024 calibration tokens: "
                     f"calibration {g['calibration_s']:.1f} s, GPTQ + pack (zlib) {g['gptq_pack_s']:.1f} s, "
                     f"total {g['total_s']:.1f} s; artifact {g['artifact_bytes']:,} bytes.")
    lines += ["", "Re-run: `bash bench/gpu_check.sh` on a CUDA machine (see its header)."]
    return lines


if __name__ == "__main__":
    main()
