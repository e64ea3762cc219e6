"""Bits per parameter vs val_bpb gap for the quantizers, on the shared checkpoint.

Each configuration is packed (auto codecs), unpacked and scored with the eval library (CPU, bf16
as the reference, first 65,536 targets of the shared val shard, seq_len 1024). bits/param =
artifact bytes * 8 / parameter count (every tensor counted, small ones kept as floats included).
GPTQ is calibrated on the shared train shard (or self-generated text) once per source; the
Hessians are cached in --cache.

Writes bench/results/quantizers.{md,json,png}; resumable (configs already in the JSON are kept).
Usage: python -m bench.quantizers [--only LABEL ...] [--calib-seqs 64]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bench.machine import machine_description

from pgcompress.errors import FormatError
from pgcompress.eval.byte_tables import build_byte_tables, load_tokenizer
from pgcompress.eval.loop import LoopConfig, evaluate
from pgcompress.eval.shards import load_val_tokens
from pgcompress.model.gpt import build_model
from pgcompress.pack import pack_report
from pgcompress.quant.base import QuantContext
from pgcompress.quant.calibration import CalibConfig, calibrate
from pgcompress.unpack import unpack

REPO = Path(__file__).resolve().parents[1]

DATA = REPO.parent / "shared" / "data"
CKPT = DATA / "checkpoints" / "ref_sp1024_9x512.pt"
TRAIN_GLOB = str(DATA / "sp1024" / "fineweb_train_*.bin")
RESULTS = REPO / "bench" / "results"
RAW_BPB_REFERENCE = 1.82131713
# data/README.md: the reference script's own code on the same tokens
REFERENCE_GAPS = {"int8-ref": 0.000712, "int6-rtn": 0.009762, "int5-rtn": 0.047514}

# label -> (method spec, calibration source: None | "shard" | "selfgen")
CONFIGS = {
    "int8-ref": ("int8-ref", None),
    "int8-rtn": ("int8-rtn", None),
    "int6-rtn": ("int6-rtn", None),
    "int5-rtn": ("int5-rtn", None),
    "int4-rtn": ("int4-rtn", None),
    "int6-clip": ("int6-clip", None),
    "int5-clip": ("int5-clip", None),
    "int6-sdclip": ("int6-sdclip", None),
    "int5-sdclip": ("int5-sdclip", None),
    "int6-gptq (shard)": ("int6-gptq", "shard"),
    "int6-gptq-k12.85 (shard)": ("int6-gptq-k12.85", "shard"),
    "int5-gptq (shard)": ("int5-gptq", "shard"),
    "int4-gptq (shard)": ("int4-gptq", "shard"),
    "int6-gptq (selfgen)": ("int6-gptq", "selfgen"),
    "int5-gptq (selfgen)": ("int5-gptq", "selfgen"),
    "int5-gptq+lqer (shard)": ("int5-gptq+lqer", "shard"),
    "int4-gptq+lqer (shard)": ("int4-gptq+lqer", "shard"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="*", help="labels to (re)run")
    ap.add_argument("--calib-seqs", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=65_536)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/pgc_bench_hessians"))
    args = ap.parse_args()
    torch.manual_seed(0)
    sd = torch.load(CKPT, map_location="cpu", weights_only=True)
    params = sum(t.numel() for t in sd.values())
    tokens = load_val_tokens(DATA / "sp1024", 1024, args.max_tokens)
    tables = build_byte_tables(load_tokenizer(DATA / "tokenizers" / "fineweb_1024_bpe.model"), sd["tok_emb.weight"].shape[0])
    out_json = RESULTS / "quantizers.json"
    results = json.loads(out_json.read_text()) if out_json.exists() else {}
    results.setdefault("configs", {})

    def score(state_dict) -> float:
        model = build_model(state_dict)
        return evaluate(model, tokens, tables, LoopConfig(), torch.device("cpu")).val_bpb

    if "raw_bpb" not in results:
        t = time.time()
        results["raw_bpb"] = score(sd)
        print(f"raw val_bpb {results['raw_bpb']:.8f} ({time.time() - t:.0f} s)", flush=True)

    hessians: dict[str, dict] = {}

    def hessians_for(source: str) -> tuple[dict, float]:
        path = args.cache / f"{source}_{args.calib_seqs}.pt"
        if path.exists():
            blob = torch.load(path, weights_only=True)
            return blob["H"], float(blob["seconds"])
        cfg = CalibConfig(shards=TRAIN_GLOB if source == "shard" else None,
                          selfgen=args.calib_seqs if source == "selfgen" else 0, seqs=args.calib_seqs)
        t = time.time()
        H = calibrate(sd, cfg)
        secs = time.time() - t
        args.cache.mkdir(parents=True, exist_ok=True)
        torch.save({"H": H, "seconds": secs}, path)
        return H, secs

    for label, (method, source) in CONFIGS.items():
        if args.only is not None and label not in args.only:
            continue
        if args.only is None and label in results["configs"]:
            continue
        calib_s = 0.0
        ctx = QuantContext()
        if source:
            if source not in hessians:
                hessians[source] = hessians_for(source)
            ctx = QuantContext(hessians[source][0])
            calib_s = hessians[source][1]
        t = time.time()
        packed = pack_report(sd, method=method, context=ctx)
        pack_s = time.time() - t
        codec = "auto"
        try:
            weights = unpack(packed.data)
        except FormatError as exc:  # a codec under construction that cannot read its own stream
            print(f"{label}: auto codecs failed to round-trip ({exc}); using brotli", flush=True)
            codec = "brotli"
            packed = pack_report(sd, method=method, context=ctx, codec=codec)
            weights = unpack(packed.data)
        t = time.time()
        bpb = score(weights)
        eval_s = time.time() - t
        row = {"method": method, "calibration": source, "bytes": packed.model_bytes, "codec": codec,
               "bits_per_param": packed.model_bytes * 8 / params, "val_bpb": bpb, "gap": bpb - results["raw_bpb"],
               "pack_s": pack_s, "calib_s": calib_s, "eval_s": eval_s}
        results["configs"][label] = row
        print(f"{label:<26} {row['bits_per_param']:.3f} bits/param  gap {row['gap']:+.6f}  "
              f"(pack {pack_s:.0f} s, eval {eval_s:.0f} s)", flush=True)
        results.update(params=params, machine=machine_description(), calib_seqs=args.calib_seqs,
                       max_tokens=args.max_tokens)
        RESULTS.mkdir(exist_ok=True)
        out_json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    write_report(results)


def write_report(results: dict) -> None:
    rows = sorted(results["configs"].items(), key=lambda kv: -kv[1]["bits_per_param"])
    lines = [
        "# Quantizers on the shared checkpoint: bits per parameter vs val_bpb gap",
        "",
        f"Checkpoint `ref_sp1024_9x512.pt` ({results['params']:,} params), first {results['max_tokens']:,} "
        "target tokens of `sp1024/fineweb_val_000000.bin`, seq_len 1024, CPU bf16 eval (pgcompress.eval). "
        f"Raw val_bpb {results['raw_bpb']:.8f} (reference {RAW_BPB_REFERENCE:.8f}). "
        f"Calibration: {results['calib_seqs']} x 1024 tokens (train shard, evenly spaced windows; or "
        "self-generated by the model from BOS, temperature 1). bits/param = artifact bytes * 8 / params "
        "(auto codecs; all tensors counted; small tensors kept as floats, as the reference does).",
        "",
        f"Machine: {results['machine']} (shared with other jobs: times are indicative).",
        "",
        "| config | bytes | codecs | bits/param | val_bpb | gap | reference gap | pack s | calib s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in rows:
        ref = REFERENCE_GAPS.get(label)
        lines.append(f"| {label} | {r['bytes']:,} | {r.get('codec', 'auto')} | {r['bits_per_param']:.3f} | {r['val_bpb']:.6f} | {r['gap']:+.6f} | "
                     f"{'' if ref is None else f'+{ref:.6f}'} | {r['pack_s']:.0f} | {r['calib_s']:.0f} |")
    cfg = results["configs"]
    lines += ["", "## Targets (GPTQ gap at most half the plain RTN gap, same bits, same tokens, shard calibration)", ""]
    for b in (6, 5):
        rtn, gptq = cfg.get(f"int{b}-rtn"), cfg.get(f"int{b}-gptq (shard)")
        if rtn and gptq:
            ratio = gptq["gap"] / rtn["gap"]
            lines.append(f"- int{b}: GPTQ gap {gptq['gap']:+.6f} vs RTN {rtn['gap']:+.6f}: ratio {ratio:.2f} "
                         f"({'met' if ratio <= 0.5 else 'NOT met'})")
    lines += ["", "GPU: not measured here (no GPU lent this session).", "",
              "Re-run: `python -m bench.quantizers` (add `--only LABEL` to redo one row)."]
    (RESULTS / "quantizers.md").write_text("\n".join(lines) + "\n")
    plot(rows)


def plot(rows) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for label, r in rows:
        family = label.split()[0].split("-", 1)[1] if "-" in label else label
        marker = {"ref": "s", "rtn": "o", "clip": "^", "sdclip": "v", "gptq": "D"}.get(family.split("+")[0], "*")
        ax.scatter(r["bits_per_param"], max(r["gap"], 1e-5), marker=marker)
        ax.annotate(label, (r["bits_per_param"], max(r["gap"], 1e-5)), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xlabel("bits per parameter (artifact bytes * 8 / params)")
    ax.set_ylabel("val_bpb gap vs raw checkpoint")
    ax.set_title("ref_sp1024_9x512: quantizers (first 65,536 val tokens, CPU bf16)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "quantizers.png", dpi=120)


if __name__ == "__main__":
    main()
