"""Study rows for the code-set comparison (bench/code_sets.py): context-model entropies (theory),
the records' per-group pipeline (bench/studies/record_pipeline.py), and where rans-ctx2's bytes go,
with rans-ctx2 ablations. Writes its rows into bench/results/coders.{md,json}
beside the product's (the Markdown is bench/coders.py's).

    python -m bench.studies.coders_codes --code-sets int8-ref,int6-sdclip,int6-gptq [--cache DIR]
    python -m bench.studies.coders_codes --brief-sets int6-sdclip,int8-ref,int6-gptq [--cache DIR]
    python -m bench.studies.coders_codes --code-sets ... --add-deepcabac | --add-pgcompress | --add-record

Theory rows are empirical conditional entropies with no table cost: sum over contexts of
n * H(histogram). With few symbols per context they are optimistic (the histogram is fitted to
the very symbols it scores), so "per column, shuffled codes" measures that bias: the same
per-column estimate after a random permutation of the tensor's codes, which destroys every
column structure. A context model only gains what it beats its own shuffled control by.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from bench import code_sets
from bench.code_sets import code_set, deepcabac, pgcompress_coders
from bench.coders import CKPT, REPO, write_md
from bench.machine import machine_description
from bench.studies.record_pipeline import record_pipeline
import pgcompress.coding.ctx_model as ctx_model
import pgcompress.coding.rans_core as rans_core
import pgcompress.coding.rans_ctx2 as rans_ctx2
from pgcompress.coding.base import stream_info_for
from pgcompress.coding.ctx_model import log_widths
from pgcompress.registry import get_codec


def cond_entropy(ctx: np.ndarray, idx: np.ndarray, a: int) -> float:
    """ctx, idx: [n] int64 -> bytes of sum_ctx n * H(empirical histogram)."""
    k = int(ctx.max()) + 1
    h = np.bincount(ctx * a + idx, minlength=k * a).reshape(k, a).astype(np.float64)
    n = h.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(-(h * np.where(h > 0, np.log2(h / n), 0.0)).sum() / 8)


def width_contexts(q: np.ndarray) -> dict[str, np.ndarray]:
    """q: [R, C] int64 codes -> flat [R * C] context indices: "t" the context codec's (row + column
    log-width at 4 steps an octave, 0..63), "two_d" row width x column width, "left" / "up" the magnitude of the left
    neighbour / of the same column in the previous row in 4 buckets (0.3, 0.8, 1.5 x the RMS)."""
    r, c = q.shape
    ia, jb = log_widths(q)
    t = np.clip(ia[:, None] + jb[None, :] - (ia.min() + jb.min()), 0, 63)
    rms = float(np.sqrt((q.astype(np.float64) ** 2).mean())) or 1.0
    edges = np.array([0.3, 0.8, 1.5]) * rms
    left = np.hstack([np.zeros((r, 1), np.int64), q[:, :-1]])
    up = np.vstack([np.zeros((1, c), np.int64), q[:-1]])
    return {"t": t.reshape(-1), "two_d": (ia[:, None] * (jb.max() + 1) + jb[None, :]).reshape(-1),
            "left": np.searchsorted(edges, np.abs(left), side="right").reshape(-1),
            "up": np.searchsorted(edges, np.abs(up), side="right").reshape(-1)}


def theory(codes: dict[str, np.ndarray]) -> dict[str, float]:
    rng = np.random.default_rng(0)
    tot: dict[str, float] = {}

    def add(key, value):
        tot[key] = tot.get(key, 0.0) + value

    for q in codes.values():
        q = q.astype(np.int64)
        r, c = q.shape
        lo = int(q.min())
        a = int(q.max()) - lo + 1
        idx = (q - lo).reshape(-1)
        rows = np.repeat(np.arange(r), c)
        cols = np.tile(np.arange(c), r)
        add("order-0 (one distribution per tensor)", cond_entropy(np.zeros_like(idx), idx, a))
        add("per row (one distribution per output unit)", cond_entropy(rows, idx, a))
        add("per column (one distribution per input feature)", cond_entropy(cols, idx, a))
        add("per column, codes shuffled within the tensor (bias control)",
            cond_entropy(cols, idx[rng.permutation(idx.size)], a))
        ctx = width_contexts(q)
        t = ctx["t"]
        add("row x column width (rans-ctx2's contexts, 4 width steps an octave)", cond_entropy(t, idx, a))
        add("row width x column width, 2-D", cond_entropy(ctx["two_d"], idx, a))
        for label, key in (("left neighbour", "left"), ("previous row, same column", "up")):
            add(f"row x column width x |{label}| (4 buckets)", cond_entropy(t * 4 + ctx[key], idx, a))
    return tot


def rans_ctx2_parts(codes: dict[str, np.ndarray]) -> dict[str, float]:
    """Where rans-ctx2's bytes go (summed over matrices): its header, the model's ideal code length
    of the side indices and of the codes (sum of -log2 p with the integer tables), and the rest of
    the rANS body (lane states, rounding) as coder overhead. The model is the one whose blob the
    codec keeps (the smaller of the widths model and the centred one)."""
    parts = {"header (model, side tables, lane and word counts)": 0.0, "side indices, ideal": 0.0,
             "codes, ideal (-log2 p of the model's tables)": 0.0, "coder overhead (lane states, rounding)": 0.0}
    keys = list(parts)
    lanes = 0
    for q in codes.values():
        flat = q.reshape(-1)
        blob = get_codec("rans-ctx2").encode(flat, dataclasses.replace(stream_info_for(flat), shape=tuple(q.shape)))
        n_lanes = rans_core.lanes_for(q.size, rans_ctx2.SYMBOLS_PER_LANE)
        fits = [(len(rans_ctx2.encode_model(m, n_lanes)), m)
                for m in rans_ctx2.RansCtx2Codec().models(q, int(q.min()), int(q.max()))]
        size, model = min(fits, key=lambda t: t[0])  # ties: the first, as the codec keeps
        assert size == len(blob), "rans-ctx2 kept another model than the one measured"
        pos = 0
        for _ in range(len(model.head) + 2):  # the model's header, then the body's lane and word counts
            pos = rans_core.read_uvarint(blob, pos)[1]
        parts[keys[0]] += pos
        parts[keys[1]] += model.ideal_side
        parts[keys[2]] += model.ideal_codes
        parts[keys[3]] += len(blob) - pos - model.ideal_side - model.ideal_codes
        lanes += n_lanes
    parts["lanes"] = lanes
    return parts


def rans_ctx2_ablations(codes: dict[str, np.ndarray]) -> dict[str, int]:
    """rans-ctx2's total bytes with one of its choices changed (module constants of the coder core,
    the context model or the codec patched for the run; each is read at call time)."""
    variants = {"as shipped": [], "no tail (initial states carry nothing)": [(rans_core, "MAX_TAIL_STEPS", 0)],
                "width steps fixed at 4 an octave (as rans-ctx)": [(ctx_model, "WIDTH_STEPS", (4,))],
                "1024 codes a lane": [(rans_ctx2, "SYMBOLS_PER_LANE", 1024)],
                "3072 codes a lane": [(rans_ctx2, "SYMBOLS_PER_LANE", 3072)],
                "4096 codes a lane": [(rans_ctx2, "SYMBOLS_PER_LANE", 4096)],
                "16384 codes a lane": [(rans_ctx2, "SYMBOLS_PER_LANE", 16384)]}
    out = {}
    for label, patch in variants.items():
        saved = [(mod, k, getattr(mod, k)) for mod, k, _ in patch]
        try:
            for mod, k, v in patch:
                setattr(mod, k, v)
            out[label] = sum(len(get_codec("rans-ctx2").encode(
                q.reshape(-1), dataclasses.replace(stream_info_for(q.reshape(-1)), shape=tuple(q.shape))))
                for q in codes.values())
        finally:
            for mod, k, v in saved:
                setattr(mod, k, v)
    return out


def run(sd: dict, kinds: list[str], cache: Path | None) -> dict:
    res = {}
    for kind in kinds:
        codes = code_set(sd, kind, cache)
        raw, raw_t = code_sets.code_bytes(codes)
        print(kind, len(codes), "matrices", len(raw), "codes", flush=True)
        res[kind] = {"params": len(raw), "matrices": len(codes), "theory": theory(codes),
                     "pgcompress": pgcompress_coders(codes), "deepcabac": deepcabac(codes),
                     "generic": code_sets.generic(raw, raw_t), "record_pipeline": record_pipeline(codes)}
    return res


def add_deepcabac(res: dict, sd: dict, cache: Path | None) -> None:
    """Re-measure only DeepCABAC for the code sets already in ``res``."""
    for kind, r in res.items():
        r["deepcabac"] = deepcabac(code_set(sd, kind, cache))


def add_pgcompress(res: dict, sd: dict, cache: Path | None) -> None:
    """Re-measure only pgcompress's coders (and their byte breakdowns) for the sets already in ``res``."""
    for kind, r in res.items():
        codes = code_set(sd, kind, cache)
        r["pgcompress"] = pgcompress_coders(codes)
        r.pop("rans_ctx_parts", None)  # the first context codec's, measured before the merge
        r["rans_ctx2_parts"] = rans_ctx2_parts(codes)
        r["rans_ctx2_ablations"] = rans_ctx2_ablations(codes)
        print(" ", kind, r["rans_ctx2_ablations"], flush=True)


def add_record(res: dict, sd: dict, cache: Path | None) -> None:
    """Add the records' per-group pipeline to the code sets already in ``res``."""
    for kind, r in res.items():
        r["record_pipeline"] = record_pipeline(code_set(sd, kind, cache))
        print(" ", kind, r["record_pipeline"], flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", type=Path, default=CKPT)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "coders")
    ap.add_argument("--code-sets", default=None, help="the full comparison on these code sets of the checkpoint")
    ap.add_argument("--brief-sets", default=None,
                    help="the full comparison on a briefly trained record-shaped model's codes "
                         "(int6-sdclip,int8-ref,int6-gptq); trains it (~5 min) unless --cache holds it")
    ap.add_argument("--cache", type=Path, default=None, help="directory to keep/reuse the quantized codes")
    ap.add_argument("--add-deepcabac", action="store_true",
                    help="with --code-sets: only re-measure DeepCABAC for the sets already in the JSON")
    ap.add_argument("--add-pgcompress", action="store_true",
                    help="with --code-sets: only re-measure pgcompress's coders (and their byte breakdowns) "
                         "for the sets already in the JSON")
    ap.add_argument("--add-record", action="store_true",
                    help="with --code-sets: only add the records' per-group pipeline to the sets already in the JSON")
    args = ap.parse_args()
    if not (args.code_sets or args.brief_sets):
        ap.error("give --code-sets or --brief-sets")
    path = args.out.with_suffix(".json")
    results = json.loads(path.read_text()) if path.exists() else {"machine": machine_description(), "payloads": {}}
    if args.brief_sets:
        brief_sd, info = code_sets.brief_model(args.cache)
        results["brief_machine"] = machine_description()
        results["brief_model"] = info
        results["brief_sets"] = run(brief_sd, args.brief_sets.split(","), args.cache / "brief" if args.cache else None)
    else:
        sd = torch.load(args.ckpt, map_location="cpu", weights_only=True)
        if args.add_deepcabac:
            add_deepcabac(results["code_sets"], sd, args.cache)
        elif args.add_pgcompress:
            results["code_sets_pgcompress_machine"] = machine_description()
            add_pgcompress(results["code_sets"], sd, args.cache)
        elif args.add_record:
            results["code_sets_record_machine"] = machine_description()
            add_record(results["code_sets"], sd, args.cache)
        else:
            results["code_sets_machine"] = machine_description()
            results["code_sets"] = run(sd, args.code_sets.split(","), args.cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, sort_keys=True))
    write_md(results, args.out.with_suffix(".md"))


if __name__ == "__main__":
    main()
