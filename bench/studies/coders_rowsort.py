"""Row reordering + a previous-row context on top of rans-ctx2: what would it save? (issue #19)

Issue #19's Build item 2 asks for reordering that pays for itself, measured, not assumed; the
records' pipeline sorts rows by similarity before ZPAQ. This benchmark sizes the model such a
codec would use, before anyone builds it, on the shared checkpoint's code sets and on the briefly
trained record-shaped model's (bench/coders.py --brief-sets, same seed):

- baseline: rans-ctx2's model of each matrix (its centres, widths and tables as the codec fits
  them; of the models it fits, the one of least ideal size), its codes at their ideal length;
- candidate: the residual after those centres, rows put in greedy nearest-neighbour order (L2),
  each code's context the codec's (row + column log-width, 4 steps an octave) times the value of
  the code above it (clipped to -3..3: 7 buckets), each bucket with its own rounded-mean shift and
  its own Student-t widths (fitted as the codec fits them, integer tables as the decoder would
  build them), its codes at their ideal length + the widths (1-3 B each) + the permutation
  (ceil(log2 R) bits a row). The same without the reordering is the third column.

Side information (row and column widths, centres) is the same in both and left out; so are lane
states. A codec would keep, per matrix, whichever is smaller: the last column counts that.

Run: python -m bench.studies.coders_rowsort [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from bench import code_sets
from bench.studies.coders_codes import width_contexts
from bench.machine import machine_description

from pgcompress.coding.ctx_model import SCALE_BITS, best_centres, ctx_tables, fit_widths, model_bytes
from pgcompress.coding.rans_core import uvarint_len
from pgcompress.coding.rans_ctx2 import RansCtx2Codec

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
RESULTS = Path(__file__).resolve().parents[1] / "results"
UP_CLIP = 3
SETS = ("int6-sdclip", "int8-ref")


def greedy_order(x: np.ndarray) -> np.ndarray:
    """x: [R, C] -> a row order in which each row is followed by its nearest unused row (L2),
    starting from the row of least norm."""
    x = x.astype(np.float64)
    sq = (x * x).sum(axis=1)
    d = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.fill_diagonal(d, np.inf)
    cur = int(np.argmin(sq))
    order, used = [cur], np.zeros(len(x), dtype=bool)
    used[cur] = True
    for _ in range(len(x) - 1):
        cur = int(np.argmin(np.where(used, np.inf, d[cur])))
        used[cur] = True
        order.append(cur)
    return np.array(order)


def ctx2_residual(q: np.ndarray) -> tuple[float, np.ndarray]:
    """-> (rans-ctx2's ideal code bytes for q, q minus the centres that model keeps)."""
    model = min(RansCtx2Codec().models(q, int(q.min()), int(q.max())), key=model_bytes)
    e = q.astype(np.int64)
    if model.head[1] >> 3:  # centre mode: the centred model, fitted on best_centres(q)
        rc, cc = best_centres(q)
        if rc is not None:
            e = e - rc[:, None]
        if cc is not None:
            e = e - cc[None, :]
    return model.ideal_codes, e


def up_context_bytes(e: np.ndarray, reorder: bool) -> float:
    """Ideal bytes of e [R, C] under the previous-row model (codes + widths + permutation)."""
    r, c = e.shape
    perm = greedy_order(e) if reorder else np.arange(r)
    q = e[perm]
    ctx = width_contexts(q)["t"].reshape(r, c)
    k = int(ctx.max()) + 1
    up = np.vstack([np.zeros((1, c), np.int64), q[:-1]])
    bucket = np.clip(up, -UP_CLIP, UP_CLIP) + UP_CLIP
    lo, hi = int(q.min()), int(q.max())
    total = r * int(np.ceil(np.log2(max(r, 2)))) / 8 if reorder else 0.0
    for b in range(2 * UP_CLIP + 1):
        m = bucket == b
        if not m.any():
            continue
        shift = int(np.round(q[m].mean()))
        v, cx = q[m] - shift, ctx[m]
        vlo, vhi = lo - shift, hi - shift
        a = vhi - vlo + 1
        hist = np.bincount(cx * a + (v - vlo), minlength=k * a).reshape(k, a)
        tail, us = fit_widths(hist, vlo, vhi)
        freq = ctx_tables(us, tail, vlo, vhi, SCALE_BITS)
        total += float(-np.log2(freq[cx, v - vlo] / 2.0 ** SCALE_BITS).sum() / 8)
        total += sum(uvarint_len(u) for u in us) + 2
    return total


def measure(codes: dict[str, np.ndarray]) -> dict:
    rows = {}
    for name, q in codes.items():
        base, e = ctx2_residual(q)
        rows[name] = {"ctx2": base, "previous_row": up_context_bytes(e, False),
                      "reordered_previous_row": up_context_bytes(e, True)}
    tot = {k: sum(r[k] for r in rows.values()) for k in ("ctx2", "previous_row", "reordered_previous_row")}
    tot["best_per_matrix"] = sum(min(r.values()) for r in rows.values())
    return {"matrices": rows, "total": tot}


def markdown(res: dict) -> str:
    lines = ["# Row reordering + previous-row context on top of rans-ctx2 (bench/studies/coders_rowsort.py)", "",
             f"Machine: {res['machine']}", "", __doc__.split("\n\n", 1)[1].split("Run:")[0].strip(), ""]
    for model, sets in res["models"].items():
        lines += [f"## {model}", "",
                  "| code set | rans-ctx2 model, codes | previous-row context | reordered + previous-row | best per matrix |",
                  "|---|---:|---:|---:|---:|"]
        for set_name, r in sets.items():
            t = r["total"]
            base = t["ctx2"]
            cells = [f"{t[k]:,.0f} ({t[k] / base - 1:+.2%})" for k in ("previous_row", "reordered_previous_row",
                                                                       "best_per_matrix")]
            lines.append(f"| {set_name} | {base:,.0f} | " + " | ".join(cells) + " |")
        lines.append("")
        for set_name, r in sets.items():
            gains = sorted(((v["reordered_previous_row"] / v["ctx2"] - 1, n) for n, v in r["matrices"].items()))
            lines.append(f"{set_name}, most helped by reordering: " + "; ".join(f"{n} {g:+.2%}" for g, n in gains[:3])
                         + f"; least: {gains[-1][1]} {gains[-1][0]:+.2%}.")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", type=Path, default=None, help="where code sets and the brief model are kept")
    args = ap.parse_args()
    res = {"machine": machine_description(), "models": {}}
    shared = torch.load(SHARED / "checkpoints" / "ref_sp1024_9x512.pt", weights_only=True)
    brief, info = code_sets.brief_model(args.cache)
    res["brief_model"] = info
    for label, sd, cache in (("shared checkpoint (ref_sp1024_9x512.pt)", shared, args.cache),
                             ("briefly trained record-shaped model (bench/coders.py --brief-sets)", brief,
                              args.cache / "brief" if args.cache else None)):
        res["models"][label] = {s: measure(code_sets.code_set(sd, s, cache)) for s in SETS}
        print(label, {s: r["total"] for s, r in res["models"][label].items()}, flush=True)
    (RESULTS / "coders_rowsort.json").write_text(json.dumps(res, indent=1) + "\n")
    (RESULTS / "coders_rowsort.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
