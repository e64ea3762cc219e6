"""Which budget-solver candidates pay for themselves: one candidate table of the shared checkpoint,
solved at 4-12 MB with candidate subsets removed, every artifact evaluated.

The K-FAC proxy scores each candidate from the same calibration its GPTQ / LQER fit used, so a
candidate that fits the calibration more closely can look better to the proxy than it is on
held-out text; this measures it. Writes bench/results/budget_candidates.{md,json}.

Usage: python -m bench.studies.budget_candidates [--budgets 4e6,6e6,...] [--max-tokens 65536]
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

from bench.machine import machine_description

import pgcompress
from pgcompress.budget import prepare
from pgcompress.budget.accounting import Accounting
from pgcompress.budget.solver import solve
from pgcompress.budget.table import pareto
from pgcompress.eval.runner import EvalOptions, run
from pgcompress.quant.calibration import CalibConfig

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
CKPT = DATA / "checkpoints" / "ref_sp1024_9x512.pt"
RESULTS = REPO / "bench" / "results"
# extra candidates, by the name pattern of the methods they add (the table must have been built with them)
EXTRA = {"+lqer-r16": "int{b}-gptq+lqer-r16 for b in 2..4", "-g64": "int{b}-gptq-g64 for b in 2..3"}
VARIANTS = {"all": (), "no -g64": ("-g64",), "no -g64, no +lqer-r16": ("-g64", "+lqer-r16")}


def restricted(table, drop: tuple[str, ...]):
    """A copy of the table without the candidates whose method names contain any of ``drop``
    (fresh Candidate objects: a solve refines the rates of the ones it writes)."""
    keep = [copy.copy(r) for r in table.rows]
    uniform: dict = {}
    for r in keep:
        r.all = [copy.copy(c) for c in (r.all or r.front) if not any(d in c.method for d in drop)]
        r.front = pareto(r.all)
        for c in r.all:
            uniform.setdefault(c.method, {})[r.name] = c
    out = copy.copy(table)
    out.rows, out.uniform = keep, uniform
    return out


def with_extra_candidates():
    """Register the extra candidates on top of the shipped ones, for this process only."""
    from pgcompress.registry import register_candidates

    def extra(kind):
        if not (kind.is_matrix and kind.has_hessian):
            return []
        names = [f"int{b}-gptq+lqer-r16" for b in (2, 3, 4)]
        if kind.shape[-1] % 64 == 0 and kind.shape[-1] > 64:
            names += [f"int{b}-gptq-g64" for b in (2, 3)]
        return names

    register_candidates(extra)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--budgets", default="4e6,6e6,8e6,10e6,12e6")
    ap.add_argument("--max-tokens", type=int, default=65_536)
    args = ap.parse_args()
    budgets = [int(float(b)) for b in args.budgets.split(",")]
    with_extra_candidates()
    sd = pgcompress.load_checkpoint(CKPT)
    calib = CalibConfig(shards=str(DATA / "sp1024" / "fineweb_train_*.bin"), seqs=64)
    t = time.perf_counter()
    prep = prepare(sd, calib)
    out = {"machine": machine_description(), "prepare_s": time.perf_counter() - t, "max_tokens": args.max_tokens,
           "calibration": "64 x 1024 train-shard windows", "rows": []}
    tmp = Path(tempfile.mkdtemp())
    paths = []
    for vname, drop in VARIANTS.items():
        for b in budgets:
            sol = solve(restricted(prep.table, drop), sd, b, Accounting(None, "self-contained"), cache=prep.cache)
            counts: dict[str, int] = {}
            for tc in sol.tensors:
                counts[tc.method] = counts.get(tc.method, 0) + 1
            p = tmp / f"{len(paths)}.pgc"
            p.write_bytes(sol.data)
            paths.append(p)
            out["rows"].append({"variant": vname, "budget": b, "total": sol.total_bytes, "pred": sol.predicted,
                                "methods": counts})
    opts = EvalOptions(data_path=DATA / "sp1024", tokenizer_path=DATA / "tokenizers" / "fineweb_1024_bpe.model",
                       max_tokens=args.max_tokens, device="cpu")
    res = run([CKPT] + paths, opts)
    for row, r in zip(out["rows"], res[1:]):
        row["gap"] = r.val_bpb - res[0].val_bpb
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "budget_candidates.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    render(out)


def render(out: dict) -> None:
    budgets = sorted({r["budget"] for r in out["rows"]})
    by = {(r["variant"], r["budget"]): r for r in out["rows"]}
    lines = ["# Budget-solver candidates: which pay for themselves (`python -m bench.studies.budget_candidates`)", "",
             f"Machine: {out['machine']}.", "",
             f"One candidate table of `{CKPT.name}` (calibration: {out['calibration']}, with the extra candidates "
             + "; ".join(f"`{v}`" for v in EXTRA.values()) + "), solved at each budget with candidate subsets "
             f"removed; val_bpb gap on the first {out['max_tokens']:,} val tokens (CPU). Predicted = the solver's "
             "K-FAC proxy (its objective).", "",
             "| budget | " + " | ".join(f"{v}: gap (predicted)" for v in VARIANTS) + " |",
             "|---:|" + "---:|" * len(VARIANTS)]
    for b in budgets:
        cells = []
        for v in VARIANTS:
            r = by.get((v, b))
            cells.append("" if r is None else f"{r['gap']:+.6f} ({r['pred']:.3e})")
        lines.append(f"| {b:,} | " + " | ".join(cells) + " |")
    used = {v: sum(n for r in out["rows"] if r["variant"] == v for m, n in r["methods"].items()
                   if any(d in m for d in EXTRA)) for v in VARIANTS}
    lines += ["", "Tensors given an extra candidate, summed over the budgets: "
              + ", ".join(f"{v}: {n}" for v, n in used.items()) + ".", ""]
    if out.get("note"):
        lines += [out["note"], ""]
    (RESULTS / "budget_candidates.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
