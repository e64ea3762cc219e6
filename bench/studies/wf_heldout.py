"""Is the solver's K-FAC proxy optimistic for waterfilled columns (a winner's curse)? (issue #29)

wf-kfac shapes its errors by the calibration's own statistics (column steps from H, row steps from
the output sensitivities a), and the solver scores the result with the same statistics. If those
estimates are noisy, the shaped error lands where the sample says it is cheap and costs more on
other text. Test: calibrate on two disjoint halves of the train tokens (A, B: 32 x 1024 each, 16
sequences with gradients each); quantize every calibrated matrix of the shared checkpoint from A
(GPTQ and wf, Hessians and sensitivities from A) and score each result with A's proxy (in sample)
and B's (held out). A ratio B/A near 1 says the proxy's estimate is stable for that method; a ratio
well above GPTQ's says the method exploits sampling noise.

Usage: python -m bench.studies.wf_heldout [--methods int4-gptq,int3-gptq,wf3.5-kfac,wf3-kfac,wf3.5]
Writes bench/results/wf_heldout.{md,json}. About 25 minutes on a loaded 2-core CPU.
"""

from __future__ import annotations

import argparse
import json

import pgcompress
from bench.machine import machine_description
from bench.waterfill import CKPT, RESULTS, TRAIN
from pgcompress.budget.distortion import Distortion
from pgcompress.quant.base import QuantContext
from pgcompress.quant.calib_stats import collect_stats
from pgcompress.quant.calibration import calibration_model, shard_tokens
from pgcompress.registry import get_method

METHODS = ("int4-gptq", "int3-gptq", "wf3.5-kfac", "wf3-kfac", "wf3.5")


def measure(methods: list[str]) -> list[dict]:
    sd = pgcompress.load_checkpoint(CKPT)
    tokens = shard_tokens(TRAIN, 64, 1024)
    model = calibration_model(sd)
    A = collect_stats(model, tokens[:32], 8, 16)
    B = collect_stats(model, tokens[32:], 8, 16)
    dA, dB = Distortion(A), Distortion(B)
    ctx = QuantContext(A.hessians, memo={}, out_sens=A.out_sens)
    rows = []
    for name, t in sd.items():
        if t.ndim != 2 or t.numel() < 65536 or name not in A.hessians:
            continue
        W = t.float()
        row = {"tensor": name, "params": t.numel()}
        for m in methods:
            enc = get_method(m).quantize(name, t, ctx)
            W_hat = get_method(enc.method).dequantize(enc, tuple(t.shape), t.dtype).float()
            row[m] = [dA(name, W, W_hat), dB(name, W, W_hat)]
        ctx.memo.clear()
        rows.append(row)
    return rows


def write(rows: list[dict], methods: list[str], machine: str) -> str:
    tot = {m: [sum(r[m][0] for r in rows), sum(r[m][1] for r in rows)] for m in methods}
    lines = ["# Held-out check of the K-FAC proxy for wf (bench/studies/wf_heldout.py)", "",
             f"Machine: {machine}.", "",
             "Each method quantizes from calibration half A; its proxy (predicted loss increase) is computed "
             "with A's statistics (in sample) and with B's (held out, disjoint tokens). Ratio = held out / in "
             "sample.", "",
             "| tensor | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for r in rows:
        lines.append(f"| {r['tensor']} | " + " | ".join(f"{r[m][1] / r[m][0]:.2f}" for m in methods) + " |")
    lines.append("| **all (sum of proxies)** | " + " | ".join(f"**{tot[m][1] / tot[m][0]:.2f}**" for m in methods)
                 + " |")
    rest = [r for r in rows if r["tensor"] != "tok_emb.weight"]
    lines.append("| all but tok_emb.weight | " + " | ".join(
        f"{sum(r[m][1] for r in rest) / sum(r[m][0] for r in rest):.2f}" for m in methods) + " |")
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "wf_heldout.json").write_text(json.dumps({"machine": machine, "methods": methods, "rows": rows,
                                                         "totals": tot}, indent=1) + "\n")
    (RESULTS / "wf_heldout.md").write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(METHODS))
    args = ap.parse_args()
    methods = args.methods.split(",")
    machine = machine_description()
    print(write(measure(methods), methods, machine))


if __name__ == "__main__":
    main()
