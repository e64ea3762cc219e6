"""Kernel throughput (pgcompress.kernels): GB/s moved and the fraction of the device's copy
bandwidth (a plain device-to-device copy timed in the same run), per kernel and bit width, at a
large size and at the reference model's shapes; the weight-only quantized matmul at the eval's
shapes; and the QAT step-time overhead of fake-quant on the reference model (no fake-quant, torch
fake-quant, torch.compile'd fake-quant, the Triton kernel), as ratios from the same run.

Writes bench/results/kernels.{md,json} (or --out DIR). Usage:
    python -m bench.kernels [--out DIR] [--quick]
On CUDA it runs the Triton kernels. Without a GPU it times only the pure-torch references, on
the CPU, at the model's shapes, and writes "not measured here" for every GPU row.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

import torch

from bench.machine import machine_description

from pgcompress.kernels import dequant as DQ
from pgcompress.kernels import fake_quant as FQ
from pgcompress.kernels import qlinear as QL
from pgcompress.kernels.packing import pack_codes
from pgcompress.quant import clipping
from pgcompress.quant import grid as G

REPO = Path(__file__).resolve().parents[1]

NOT_HERE = "not measured here (no GPU lent to this task)"
LARGE = ("large 8192x8192", 8192, 8192)
MODEL_SHAPES = [("attn c_q/proj 512x512", 512, 512), ("attn c_k/c_v 256x512", 256, 512),
                ("mlp fc / tok_emb 1024x512", 1024, 512), ("mlp proj 512x1024", 512, 1024)]
EVAL_TOKENS = 64 * 1024  # one eval batch: 64 sequences of 1024


def bench(fn, device, reps: int, warmup: int = 3) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def copy_gbps(device, nbytes: int, reps: int) -> float:
    x = torch.empty(nbytes, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    return 2 * nbytes / bench(lambda: y.copy_(x), device, reps) / 1e9  # read + write


def quantized(N, K, bits, device, group=0, symmetric=True):
    W = torch.randn(N, K, device=device) * 0.02
    grid = G.Grid(bits, symmetric, group, "fp16")
    rows = G.to_rows(W, group)
    qp = clipping.absmax_qparams(rows, grid)
    q = G.quantize_rows(rows, qp, grid).reshape(N, K)
    return W, pack_codes(q, bits), qp.scale.half(), qp.zero


def dequant_rows(device, kernel: bool, shapes, reps, copy):
    out = []
    fn = DQ.dequant_packed if kernel else DQ.dequant_packed_ref
    for bits in range(2, 9):
        for label, N, K in shapes:
            _, packed, scale, _ = quantized(N, K, bits, device)
            t = bench(lambda: fn(packed, bits, K, scale, None, 0, torch.bfloat16), device, reps)
            moved = packed.numel() * 4 + scale.numel() * 2 + N * K * 2
            out.append({"kernel": "dequant -> bf16", "bits": bits, "shape": label, "seconds": t,
                        "gbps": moved / t / 1e9, "copy_fraction": moved / t / 1e9 / copy})
    return out


def fake_quant_rows(device, kernel: bool, shapes, reps, copy):
    out = []
    for bits in (2, 4, 6, 8):
        for label, N, K in shapes:
            W = torch.randn(N, K, device=device) * 0.02
            grid = G.Grid(bits)
            qp = clipping.sdclip_qparams(W, grid, clipping.SDCLIP_K[bits])
            if kernel:
                cases = {"fake-quant, given qparams": lambda: FQ.fake_quant_rows(W, qp.scale, None, grid.qmin, grid.qmax),
                         "fake-quant + absmax qparams (rtn)": lambda: FQ.absmax_fake_quant_rows(W, grid)}
            else:
                cases = {"fake-quant, given qparams": lambda: FQ.fake_quant_rows_ref(W, qp.scale, None, grid.qmin, grid.qmax),
                         "fake-quant + absmax qparams (rtn)": lambda: FQ.absmax_fake_quant_rows_ref(W, grid)}
            for name, fn in cases.items():
                t = bench(fn, device, reps)
                moved = 2 * W.numel() * 4  # fp32 in, fp32 out
                out.append({"kernel": name, "bits": bits, "shape": label, "seconds": t, "gbps": moved / t / 1e9,
                            "copy_fraction": moved / t / 1e9 / copy})
    return out


def qlinear_rows(device, kernel: bool, reps, tokens):
    out = []
    cases = [(6, s) for s in MODEL_SHAPES] + [(b, MODEL_SHAPES[2]) for b in (2, 3, 4, 5, 7, 8)]
    for bits, (label, N, K) in cases:
        W, packed, scale, _ = quantized(N, K, bits, device)
        x = torch.randn(tokens, K, device=device, dtype=torch.bfloat16)
        w_bf16 = DQ.dequant_packed_ref(packed, bits, K, scale, None, 0, torch.bfloat16)
        fn = QL.qlinear if kernel else QL.qlinear_ref
        t = bench(lambda: fn(x, packed, bits, scale), device, reps)
        t_dense = bench(lambda: torch.nn.functional.linear(x, w_bf16), device, reps)
        t_two = bench(lambda: torch.nn.functional.linear(x, DQ.dequant_packed(packed, bits, K, scale)), device, reps)
        out.append({"kernel": "qlinear" if kernel else "qlinear_ref", "bits": bits, "shape": f"{tokens}x{K} @ ({label})^T",
                    "seconds": t, "tflops": 2 * tokens * N * K / t / 1e12, "dense_bf16_seconds": t_dense,
                    "vs_dense_bf16": t / t_dense, "dequant_then_linear_seconds": t_two})
    return out


def qat_overhead(device, steps: int, seqs: int, method: str):
    """Mean step time (forward + backward + Adam) of the reference model for each fake-quant path."""
    from pgcompress import qat
    from pgcompress.model.gpt import GPT, GPTConfig, apply_reference_dtypes

    V, T = 1024, 1024
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randint(0, V, (seqs, T), device=device, generator=g)
    y = torch.randint(0, V, (seqs, T), device=device, generator=g)
    eager_fq = qat.fake_quant
    for knob in ("cache_size_limit", "recompile_limit"):  # one graph per (weight shape, method), not 8 at most
        if hasattr(torch._dynamo.config, knob):
            setattr(torch._dynamo.config, knob, 64)
    compiled_fq = torch.compile(eager_fq, dynamic=False)
    variants = {"no fake-quant": None, "torch fake-quant (eager)": "torch", "torch.compile'd fake-quant": "compiled",
                "Triton kernel": "triton"}
    out = {}
    try:
        for name, how in variants.items():
            torch.manual_seed(0)
            model = apply_reference_dtypes(GPT(GPTConfig())).to(device)
            if how:
                qat.prepare_qat(model, method, embeddings=True)
            qat.fake_quant = compiled_fq if how == "compiled" else eager_fq
            torch_only = qat.torch_fake_quant() if how in ("torch", "compiled") else contextlib.nullcontext()
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)

            def step():
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                    loss = model(x, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            try:
                with torch_only:
                    out[name] = bench(step, device, steps, warmup=3)
            except Exception as e:  # one failing variant (say, a compile error) must not lose the others
                out[name] = f"failed: {type(e).__name__}: {str(e)[:200]}"
    finally:
        qat.fake_quant = eager_fq
    base = out["no fake-quant"]
    return {k: ({"step_seconds": v, "ratio_to_no_fake_quant": v / base} if isinstance(v, float) and isinstance(base, float)
                else {"error": str(v)}) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--quick", action="store_true", help="fewer repeats (CPU)")
    ap.add_argument("--qat-method", default="int6-sdclip,tok_emb.weight=int8-ref")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    reps = 20 if cuda else (2 if args.quick else 5)
    res = {"machine": machine_description(), "device": str(device), "triton_kernels": cuda,
           "torch_threads": torch.get_num_threads()}
    if cuda:
        res["copy_gbps"] = copy = copy_gbps(device, 1 << 30, reps)
        shapes = [LARGE] + MODEL_SHAPES
        res["dequant"] = dequant_rows(device, True, shapes, reps, copy)
        res["fake_quant"] = fake_quant_rows(device, True, shapes, reps, copy)
        res["qlinear"] = qlinear_rows(device, True, reps, EVAL_TOKENS)
        res["qat"] = {"method": args.qat_method, "seqs": 16, "steps": 10,
                      "variants": qat_overhead(device, 10, 16, args.qat_method)}
    else:
        res["copy_gbps"] = copy = copy_gbps(device, 1 << 26, reps)
        res["dequant"] = dequant_rows(device, False, MODEL_SHAPES[:1] + MODEL_SHAPES[2:3], reps, copy)
        res["fake_quant"] = fake_quant_rows(device, False, MODEL_SHAPES[2:3], reps, copy)
        res["qlinear"] = qlinear_rows(device, False, reps, 1024)
    check = args.out / "gpu_kernels_check.json"  # bench/gpu/kernels_check.py, run first by gpu_check.sh
    if cuda and check.exists():
        c = json.loads(check.read_text())
        res["gpu_correctness"] = {k: c[k] for k in ("checks", "passed", "failed_required")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kernels.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "kernels.md").write_text("\n".join(report(res)) + "\n")
    print((args.out / "kernels.md").read_text())


def report(r: dict) -> list[str]:
    cuda = r["triton_kernels"]
    what = "Triton kernels" if cuda else "pure-torch references only (no GPU: the Triton kernels did not run)"
    lines = ["# Kernels: packed dequant, fused fake-quant, quantized matmul, QAT overhead", "",
             f"Machine: {r['machine']}. Measured: {what}.", "",
             f"Device copy bandwidth (tensor.copy_, read + write): {r['copy_gbps']:.1f} GB/s on {r['device']}.", ""]
    c = r.get("gpu_correctness")
    lines += ["Correctness: CI compares every kernel with its `_ref` under Triton's interpreter on the CPU "
              "(tests/test_kernels_*.py; bit-exact for fake-quant and dequant). Compiled on this GPU "
              f"(bench/gpu/kernels_check.py): {c['passed']}/{c['checks']} checks passed, {c['failed_required']} "
              "required bit-exact checks failed." if c else
              "Correctness: CI compares every kernel with its `_ref` under Triton's interpreter on the CPU "
              "(tests/test_kernels_*.py; bit-exact for fake-quant and dequant). The compiled kernels on a GPU "
              f"(bench/gpu/kernels_check.py): {NOT_HERE}.", ""]
    if not cuda:
        lines += [f"CPU timings use {r['torch_threads']} torch thread(s) on a machine shared with other jobs (load "
                  "average above): upper bounds, for scale only; they time the references, which are the spec, not "
                  "a fast path.", ""]
        lines += ["## GPU (Triton kernels)", "",
                  f"Every GPU figure (GB/s, fraction of copy bandwidth, qlinear TFLOP/s, QAT step-time ratios): "
                  f"{NOT_HERE}. `bench/gpu_check.sh` runs this script on a lent H100/H200 and rewrites this file.", ""]
    lines += [f"## Dequant and fake-quant ({r['device']}{'' if cuda else ', references'})", "",
              "GB/s = bytes moved (packed codes + scales + output; fake-quant: fp32 in + fp32 out) / median time.", "",
              "| kernel | bits | shape | time | GB/s | of copy bw |", "|---|---|---|---|---|---|"]
    for row in r["dequant"] + r["fake_quant"]:
        lines.append(f"| {row['kernel']} | {row['bits']} | {row['shape']} | {row['seconds'] * 1e6:.1f} us | "
                     f"{row['gbps']:.1f} | {row['copy_fraction']:.2f} |")
    lines += ["", f"## Weight-only quantized matmul ({r['device']}), bf16 activations", "",
              "| impl | bits | x @ W^T | time | TFLOP/s | dense bf16 F.linear | ratio | dequant + F.linear |",
              "|---|---|---|---|---|---|---|---|"]
    for row in r["qlinear"]:
        lines.append(f"| {row['kernel']} | {row['bits']} | {row['shape']} | {row['seconds'] * 1e3:.3f} ms | "
                     f"{row['tflops']:.2f} | {row['dense_bf16_seconds'] * 1e3:.3f} ms | {row['vs_dense_bf16']:.2f} | "
                     f"{row['dequant_then_linear_seconds'] * 1e3:.3f} ms |")
    lines += ["", "## QAT step-time overhead (reference model, one GPU)", ""]
    if "qat" in r:
        q = r["qat"]
        lines += [f"Method `{q['method']}` (tied embedding included: `prepare_qat(embeddings=True)`), "
                  f"{q['seqs']} x 1024 tokens per step, forward + backward + Adam, bf16 autocast, model eager, "
                  f"median of {q['steps']} steps.", "",
                  "| fake-quant | step time | ratio to no fake-quant |", "|---|---|---|"]
        for k, v in q["variants"].items():
            if "error" in v:
                lines.append(f"| {k} | {v['error']} | |")
            else:
                lines.append(f"| {k} | {v['step_seconds'] * 1e3:.1f} ms | {v['ratio_to_no_fake_quant']:.3f} |")
    else:
        lines.append(f"No fake-quant / torch / torch.compile'd / Triton step times and ratios: {NOT_HERE}.")
    lines += ["", "Re-run: `python -m bench.kernels` (GPU: `bash bench/gpu_check.sh`)."]
    return lines


if __name__ == "__main__":
    main()
