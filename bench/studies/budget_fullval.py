"""The solver's sweep of the shared checkpoint re-measured on the whole val shard (issue #17).

bench/budget.py scores the sweep on the first 65,536 val tokens (the reference numbers in
../shared/data/README.md use that prefix), and re-checks the solver's artifacts on 131,072. The
challenge's val_bpb is taken over its whole validation split; this benchmark packs the same
budgets with the same calibration (64 x 1024 train-shard windows) at HEAD and scores the raw
checkpoint and every solver artifact on 65,536 and 131,072 tokens and on all 1,001,881 tokens of
the val shard (978 sequences of 1,024; CPU bf16, `pgc eval`'s loop and batch split). A reading
is reported whatever it shows; bench/studies/eval_noise.py says how far apart two gaps must be before
any of them orders two artifacts.

Run: python -m bench.studies.budget_fullval   (about 50 minutes on a 2-core CPU)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.budget import BUDGETS, CKPT, DATA, REF_BYTES, RESULTS, TRAIN
from bench.machine import machine_description

import pgcompress
from pgcompress.atomic import atomic_write
from pgcompress.budget import pack_to_budget, prepare
from pgcompress.eval.runner import EvalOptions, run
from pgcompress.quant.calibration import CalibConfig

TOKENS = (65_536, 131_072, None)  # None: the whole val shard


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    machine = machine_description()
    sd = pgcompress.load_checkpoint(CKPT)
    t0 = time.perf_counter()
    prepared = prepare(sd, CalibConfig(shards=TRAIN, seqs=64))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for b in sorted(BUDGETS + [REF_BYTES]):
            sol = pack_to_budget(sd, b, prepared=prepared)
            path = Path(tmp) / f"budget_{b}.pgc"
            atomic_write(path, sol.data)
            paths.append(path)
            rows.append({"budget": b, "total_bytes": sol.total_bytes, "headroom": sol.headroom,
                         "predicted": sol.predicted, "gaps": {}, "val_bpb": {}})
            print(f"packed {b:,}: {sol.total_bytes:,} B", flush=True)
        pack_s = time.perf_counter() - t0
        opts = EvalOptions(data_path=DATA / "sp1024", tokenizer_path=DATA / "tokenizers" / "fineweb_1024_bpe.model",
                           device="cpu")
        raw = {}
        for n in TOKENS:
            key = "all" if n is None else str(n)
            results = run([CKPT] + paths, replace(opts, max_tokens=n))
            raw[key] = {"val_bpb": results[0].val_bpb, "tokens": results[0].token_count}
            for row, res in zip(rows, results[1:]):
                row["val_bpb"][key] = res.val_bpb
                row["gaps"][key] = res.val_bpb - results[0].val_bpb
            print(f"evaluated on {results[0].token_count:,} tokens", flush=True)
    sweep = [r for r in rows if r["budget"] in BUDGETS]
    verdict = {}
    for key in raw:
        gaps = [r["gaps"][key] for r in sweep]
        verdict[key] = {"non_increasing": all(b <= a for a, b in zip(gaps, gaps[1:])),
                        "rises": [{"from": a["budget"], "to": b["budget"], "rise": b["gaps"][key] - a["gaps"][key]}
                                  for a, b in zip(sweep, sweep[1:]) if b["gaps"][key] > a["gaps"][key]]}
    out = {"machine": machine, "pack_s": pack_s, "seconds": time.perf_counter() - t0, "raw": raw, "rows": rows,
           "verdict": verdict}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "budget_fullval.json").write_text(json.dumps(out, indent=1) + "\n")
    (RESULTS / "budget_fullval.md").write_text(markdown(out))
    print(markdown(out))


def markdown(out: dict) -> str:
    keys = list(out["raw"])
    label = {k: ("whole val shard" if k == "all" else f"first {int(k):,}") + f" ({out['raw'][k]['tokens']:,} tokens)"
             for k in keys}
    lines = ["# The solver's sweep on the whole val shard (bench/studies/budget_fullval.py)", "",
             f"Machine: {out['machine']}; {out['seconds'] / 60:.0f} min in all.", "",
             __doc__.split("\n\n", 1)[1].split("Run:")[0].strip(), "",
             "Raw checkpoint val_bpb: " + "; ".join(f"{label[k]} {out['raw'][k]['val_bpb']:.8f}" for k in keys) + ".", "",
             "| budget | total bytes | headroom | predicted damage | " + " | ".join(f"gap, {label[k]}" for k in keys) + " |",
             "|---:|---:|---:|---:|" + "---:|" * len(keys)]
    for r in out["rows"]:
        lines.append(f"| {r['budget']:,} | {r['total_bytes']:,} | {r['headroom']:,} | {r['predicted']:.4e} | "
                     + " | ".join(f"{r['gaps'][k]:+.6f}" for k in keys) + " |")
    lines.append("")
    for k in keys:
        v = out["verdict"][k]
        rises = "; ".join(f"{x['from']:,} -> {x['to']:,} B: +{x['rise']:.6f}" for x in v["rises"]) or "none"
        lines.append(f"- {label[k]}: gap non-increasing over the sweep's budgets **{v['non_increasing']}** "
                     f"(rises: {rises}).")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
