"""Correctness of the Triton kernels on a real GPU: each CUDA kernel against its ``_ref`` run on
the CPU (bit-exact where the docs say so), and QAT's CUDA path against pack -> unpack on the CPU.
CI checks the same kernels under Triton's interpreter; this is the check that the compiled code
(approximate division, FMA contraction, casts) keeps the same bits.

Usage (on a CUDA machine): python -m bench.gpu.kernels_check [--out DIR] [--ckpt FILE]
Writes DIR/gpu_kernels_check.json and prints a summary; exit code 1 if a bit-exact check failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from bench.machine import machine_description

import pgcompress
from pgcompress import qat
from pgcompress.kernels import dequant as DQ
from pgcompress.kernels import fake_quant as FQ
from pgcompress.kernels import qlinear as QL
from pgcompress.kernels.packing import pack_codes
from pgcompress.quant import clipping
from pgcompress.quant import grid as G
from pgcompress.quant.intn import parse_name

REPO = Path(__file__).resolve().parents[2]

SHAPES = [(1024, 512), (77, 45)]  # a model shape and a ragged one (kept few: each variant compiles)


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.detach().cpu().contiguous(), b.detach().cpu().contiguous()
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    view = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    return torch.equal(a.view(view), b.view(view))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--ckpt", type=Path, default=None, help="a state dict (.safetensors) whose weights to test too")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench.gpu.kernels_check needs a CUDA device (the CPU is covered by tests/test_kernels_*.py)")
    dev = torch.device("cuda")
    checks: list[dict] = []

    def record(name, ok, exact=True, **extra):
        checks.append({"check": name, "ok": bool(ok), "bit_exact_required": exact, **extra})

    g = torch.Generator().manual_seed(0)
    for b in range(2, 9):
        for mods in ("", "-asym", "-g32-bf16", "-g64-asym"):
            spec = parse_name(f"int{b}-rtn{mods}")
            for N, K in SHAPES:
                if spec.group and K % spec.group:
                    continue
                for dtype in (torch.float32, torch.bfloat16):
                    W = (torch.randn(N, K, generator=g) * 0.05).to(dtype)
                    rows = G.to_rows(W, spec.group)
                    got = FQ.absmax_fake_quant_rows(rows.to(dev), spec.grid)
                    ref = FQ.absmax_fake_quant_rows_ref(rows, spec.grid)
                    ok = same(got[0], ref[0]) and same(got[1], ref[1]) and (got[2] is None or same(got[2], ref[2]))
                    record(f"absmax fake-quant int{b}{mods} {N}x{K} {dtype}", ok)
                    qp = clipping.sdclip_qparams(rows.float(), spec.grid, clipping.SDCLIP_K[b])
                    z = None if qp.zero is None else qp.zero
                    got = FQ.fake_quant_rows(rows.to(dev), qp.scale.to(dev), None if z is None else z.to(dev),
                                             spec.grid.qmin, spec.grid.qmax)
                    record(f"fake-quant (sdclip qparams) int{b}{mods} {N}x{K} {dtype}",
                           same(got, FQ.fake_quant_rows_ref(rows, qp.scale, z, spec.grid.qmin, spec.grid.qmax)))
    # dequant, every bit width, per-row and per-group asymmetric, bf16/fp16/fp32 out
    for b in range(2, 9):
        for sym, group in ((True, 0), (False, 64)):
            grid = G.Grid(b, sym, group, "fp16")
            W = torch.randn(1024, 512, generator=g) * 0.05
            rows = G.to_rows(W, group)
            qp = clipping.absmax_qparams(rows, grid)
            packed = pack_codes(G.quantize_rows(rows, qp, grid).reshape(W.shape), b)
            for dt in (torch.bfloat16, torch.float32):
                got = DQ.dequant_packed(packed.to(dev), b, 512, qp.scale.half().to(dev),
                                        None if qp.zero is None else qp.zero.to(dev), group, dt)
                ref = DQ.dequant_packed_ref(packed, b, 512, qp.scale.half(), qp.zero, group, dt)
                record(f"dequant int{b} {'sym' if sym else 'asym'} g{group} -> {dt}", same(got, ref))
            # qlinear at an eval shape: |kernel - exact| <= 2^-7 |exact| + 1e-6 sum|x w| (bf16)
            x = torch.randn(4096, 512, generator=g).to(torch.bfloat16)
            y = QL.qlinear(x.to(dev), packed.to(dev), b, qp.scale.half().to(dev),
                           None if qp.zero is None else qp.zero.to(dev), group).cpu()
            w = DQ.dequant_packed_ref(packed, b, 512, qp.scale.half(), qp.zero, group, torch.bfloat16).double()
            exact = x.double() @ w.T
            excess = ((y.double() - exact).abs() - 2.0 ** -7 * exact.abs() - 1e-6 * (x.double().abs() @ w.abs().T)).max()
            record(f"qlinear int{b} {'sym' if sym else 'asym'} g{group} 4096x512 bf16", float(excess) <= 0, exact=False,
                   max_excess_over_tolerance=float(excess))
    # QAT's CUDA path (kernels + int8-ref's quantile on the GPU) against pack -> unpack on the CPU
    sd = None
    if args.ckpt:
        from safetensors.torch import load_file

        sd = {k: v for k, v in load_file(str(args.ckpt)).items() if v.ndim == 2 and v.numel() >= 65536}
    else:
        sd = {f"w{i}": torch.randn(512, 512, generator=g) * 0.02 for i in range(4)}
    for method in ("int6-rtn", "int4-rtn-g64-asym-bf16", "int8-ref", "int6-sdclip"):
        unpacked = pgcompress.unpack(pgcompress.pack(sd, method=method, codec="zlib"))
        n_same = 0
        for k, v in sd.items():
            n_same += same(qat.fake_quant(v.to(dev), method).to(unpacked[k].dtype), unpacked[k])
        # rtn and int8-ref are required to match; sdclip chooses its qparams in torch on the GPU
        # (std and error sums in a GPU reduction order), so a last-bit difference there is reported
        record(f"qat.fake_quant on CUDA == pack->unpack on CPU, {method}", n_same == len(sd),
               exact=method in ("int6-rtn", "int4-rtn-g64-asym-bf16", "int8-ref"), tensors=len(sd), identical=n_same)
    failed = [c for c in checks if not c["ok"] and c["bit_exact_required"]]
    summary = {"machine": machine_description(), "checks": len(checks), "passed": sum(c["ok"] for c in checks),
               "failed_required": len(failed), "results": checks}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_kernels_check.json").write_text(json.dumps(summary, indent=2) + "\n")
    for c in checks:
        if not c["ok"]:
            print("MISMATCH", c)
    print(f"{summary['passed']}/{len(checks)} checks passed; {len(failed)} required bit-exact checks failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
