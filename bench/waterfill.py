"""Waterfilled columns (``wf{B}``) against today's best per-row GPTQ grid (``int{b}-gptq``), per
tensor: Hessian-weighted output error tr(E H E^T) against coded bytes (every submittable codec
tried per stream, as an artifact does, plus the tensor's header share), the bits per weight saved
at equal error, and the high-rate prediction 0.5 * log2(AM(U_ii^-2) / GM(U_ii^-2)).

Errors are relative, tr(E H E^T) / tr(W H W^T) (scale-free); "saved at R bits" interpolates both
curves linearly in (rate, log2 error): the GPTQ rate at the error wf reaches at R bits, minus R.

Usage: python -m bench.waterfill [--model shared|brief|both] [--only SUBSTR]
Writes bench/results/waterfill.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from bench.machine import machine_description
from pgcompress.budget.rate import header_share
from pgcompress.coding.base import stream_info_for
from pgcompress.coding.choose import choose_codec
from pgcompress.quant.base import QuantContext
from pgcompress.quant.calibration import CalibConfig, calibrate_stats
from pgcompress.quant.gptq import GPTQ, hessian_error
from pgcompress.quant.waterfill import encode_rungs, waterfill
from pgcompress.registry import get_method

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CKPT = DATA / "checkpoints" / "ref_sp1024_9x512.pt"
TRAIN = str(DATA / "sp1024" / "fineweb_train_*.bin")
RESULTS = REPO / "bench" / "results"
GPTQ_BITS = (2, 3, 4, 5, 6, 7, 8)
WF_RATES = (1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0)
AT = (2.0, 3.0, 3.5, 4.0, 5.0, 6.0)  # rates at which the saving is read off


def coded_bytes(name: str, shape, enc) -> int:
    body = 0
    for arr in enc.streams.values():
        a = np.ascontiguousarray(arr)
        body += len(choose_codec(a.reshape(-1), stream_info_for(a), None, submittable=True)[1])
    return body + header_share(name, shape, enc)


def predicted_saving(W: torch.Tensor, H: torch.Tensor) -> float:
    _, U = GPTQ(W.float(), H.float(), grid=None).order()
    w = U.diagonal().double().pow(-2)  # what each column's error weighs
    return 0.5 * math.log2(float(w.mean()) / math.exp(float(w.log().mean())))


def curve_at(points: list[tuple[float, float]], x: float, xi: int, yi: int) -> float | None:
    """Linear interpolation of coordinate yi at coordinate xi = x over points sorted by xi."""
    pts = sorted(points, key=lambda p: p[xi])
    for a, b in zip(pts, pts[1:]):
        if min(a[xi], b[xi]) <= x <= max(a[xi], b[xi]) and a[xi] != b[xi]:
            t = (x - a[xi]) / (b[xi] - a[xi])
            return a[yi] + t * (b[yi] - a[yi])
    return None


def measure_tensor(name: str, W: torch.Tensor, H: torch.Tensor) -> dict:
    """W [out, in] fp32, H its Hessian -> both curves as (bits per weight, log2 relative error)."""
    ref = float(hessian_error(W, torch.zeros_like(W), H).sum())
    ctx = QuantContext({name: H})
    gptq = []
    for b in GPTQ_BITS:
        m = get_method(f"int{b}-gptq")
        enc = m.quantize(name, W, ctx)
        W_hat = m.dequantize(enc, tuple(W.shape), torch.float32)
        err = float(hessian_error(W, W_hat, H).sum()) / ref
        gptq.append((coded_bytes(name, W.shape, enc) * 8 / W.numel(), math.log2(err)))
    wf = []
    for rate, rung in zip(WF_RATES, waterfill(W, H, list(WF_RATES))):
        enc = encode_rungs(f"wf{rate:g}", [rung])
        W_hat = get_method(enc.method).dequantize(enc, tuple(W.shape), torch.float32)
        err = float(hessian_error(W, W_hat, H).sum()) / ref
        wf.append((coded_bytes(name, W.shape, enc) * 8 / W.numel(), math.log2(err)))
    saved = {}
    for r in AT:
        e = curve_at(wf, r, 0, 1)
        g = None if e is None else curve_at(gptq, e, 1, 0)
        saved[str(r)] = None if g is None else g - r
    return {"name": name, "shape": list(W.shape), "numel": W.numel(), "predicted": predicted_saving(W, H),
            "gptq": gptq, "wf": wf, "saved": saved}


def matrices(sd: dict, hessians: dict) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    out = []
    for name in sorted(sd):
        if name in hessians and sd[name].ndim == 2:
            out.append((name, sd[name].float(), hessians[name].float()))
    return out


def weighted(rows: list[dict], key) -> float | None:
    vals = [(key(r), r["numel"]) for r in rows if key(r) is not None]
    if not vals:
        return None
    return sum(v * n for v, n in vals) / sum(n for _, n in vals)


def run_model(label: str, sd: dict, only: str | None) -> dict:
    t = time.perf_counter()
    stats = calibrate_stats(sd, CalibConfig(shards=TRAIN, seqs=32, seq_len=1024 if label == "shared" else 256))
    calib_s = time.perf_counter() - t
    rows = []
    for name, W, H in matrices(sd, stats.hessians):
        if only and only not in name:
            continue
        t = time.perf_counter()
        rows.append(measure_tensor(name, W, H))
        print(f"{label} {name}: predicted {rows[-1]['predicted']:.2f}, saved at 3.5 {rows[-1]['saved']['3.5']}, "
              f"{time.perf_counter() - t:.0f} s", flush=True)
    summary = {"predicted": weighted(rows, lambda r: r["predicted"])}
    for r in AT:
        summary[f"saved@{r}"] = weighted(rows, lambda x, r=r: x["saved"][str(r)])
    return {"calibration": stats.source, "calib_s": calib_s, "tensors": rows, "summary": summary}


def fmt(x, spec=".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def markdown(results: dict) -> str:
    lines = ["# Waterfilled columns (wf) vs per-row GPTQ: Hessian-weighted error at equal coded bytes", "",
             f"Machine of the latest run: {results['machine']}.", "",
             "Rate: coded bytes per weight x 8 (every submittable codec tried per stream, plus the header share). "
             "Error: tr(E H E^T) / tr(W H W^T), H from the calibration named per model (act-order, 1% damping). "
             "'saved at R': GPTQ's rate at the error wf reaches at R bits per weight, minus R (interpolated in "
             "rate and log2 error; n/a outside GPTQ's measured range). Prediction: 0.5 log2(AM(U_ii^-2)/GM(U_ii^-2)).",
             ""]
    for label, res in results["models"].items():
        s = res["summary"]
        lines += [f"## {label} ({res['calibration']})", "", f"Measured on: {res['machine']}.",
                  "",
                  "Parameter-weighted: predicted " + fmt(s["predicted"]) + " bits/weight; saved "
                  + ", ".join(f"{fmt(s[f'saved@{r}'])} at {r:g}" for r in AT) + ".", "",
                  "| tensor | shape | predicted | " + " | ".join(f"saved @{r:g}" for r in AT) + " |",
                  "|---|---|---:|" + "---:|" * len(AT)]
        for r in res["tensors"]:
            lines.append(f"| {r['name']} | {'x'.join(map(str, r['shape']))} | {r['predicted']:.2f} | "
                         + " | ".join(fmt(r["saved"][str(a)]) for a in AT) + " |")
        lines += ["", "Curves (bits per weight, log2 relative error):", ""]
        for r in res["tensors"]:
            g = " ".join(f"({b:.2f},{e:.2f})" for b, e in r["gptq"])
            w = " ".join(f"({b:.2f},{e:.2f})" for b, e in r["wf"])
            lines.append(f"- {r['name']}: gptq int2..8 {g}; wf {w}")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("shared", "brief", "both"), default="both")
    ap.add_argument("--only", default=None, help="only tensors whose name contains this")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/pgc_bench_brief"))
    ap.add_argument("--out", default="waterfill")
    args = ap.parse_args()
    torch.manual_seed(0)
    machine = machine_description()
    previous = RESULTS / f"{args.out}.json"
    # a run of one model keeps the other model's rows from the last run (each row names its machine)
    results = json.loads(previous.read_text()) if previous.exists() and args.model != "both" else {"models": {}}
    for res in results["models"].values():
        res.setdefault("machine", results.get("machine", "not recorded"))
    results["machine"] = machine
    if args.model in ("shared", "both"):
        sd = torch.load(CKPT, map_location="cpu", weights_only=True)
        results["models"]["shared"] = run_model("shared", sd, args.only) | {"machine": machine}
    if args.model in ("brief", "both"):
        from bench.code_sets import brief_model

        sd, info = brief_model(args.cache)
        results["models"]["brief"] = run_model("brief", sd, args.only) | {"machine": machine}
        results["models"]["brief"]["model"] = info
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(results, indent=1))
    (RESULTS / f"{args.out}.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
