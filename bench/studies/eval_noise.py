"""Does the eval's noise average away with more tokens? (issue #17's last Must-show)

bench/budget.py measured the spread of val_bpb over nudged copies of the shared checkpoint (every
matrix times 1 + 2^-12 N(0, 1); pgcompress.budget.noise) at 0.000064 on 65,536 tokens and 0.000067
on 131,072: no smaller with twice the tokens. This benchmark asks why, per sequence: the raw
checkpoint and the same nudged copies score ``--seqs`` sequences of 1,024 tokens spread over the
whole val shard (every ``--every``-th), one sequence a forward in CPU bf16 autocast (the eval's
dtype rules, not its batch split). For each copy, d = its mean loss minus the raw checkpoint's
over the same sequences.

- If each sequence's change were independent noise, the spread of d over copies would shrink as
  1 / sqrt(sequences); the table sets the measured spread beside that prediction.
- If a copy's rounding moves the model's function as a whole, its d persists from one set of
  documents to another: the correlation over copies of d on the first and second half of the
  sequences measures that (near 1: persistent; near 0: averages away).
- With ``--train-seqs N``, the same copies also score N sequences of the train shard (one in
  every ``--every``), and the correlation over copies of their mean change on train and on val
  text says whether a copy's offset carries from one text to the other: if it does, an artifact
  whose rounding scores better on calibration text (which a pack may read) scores better on val.
- Either way, two artifacts whose true losses differ by D are ordered at two standard deviations
  of a difference only on about (2 sqrt(2) sd / D)^2 sequences, sd the per-sequence spread of a
  copy's change; for each step of the solver's sweep in bench/results/budget.json, D is taken as
  the difference of the predicted damages (the K-FAC proxy, nats a token), and the table gives
  that count next to the val shard's 978 sequences.

Run: python -m bench.studies.eval_noise [--seqs 256] [--every 3] [--copies 6] [--train-seqs 0]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from bench.machine import machine_description

from pgcompress.budget.noise import RELATIVE_NOISE, nudged_copies
from pgcompress.eval.shards import load_val_tokens, read_shard
from pgcompress.model.gpt import build_model

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
CHECKPOINT = SHARED / "checkpoints" / "ref_sp1024_9x512.pt"
RESULTS = Path(__file__).resolve().parents[1] / "results"
SEQ_LEN = 1024


def sequence_losses(state_dict, tokens: torch.Tensor, starts: list[int]) -> np.ndarray:
    """Mean loss (nats a token) of each sequence starting at ``starts``: [len(starts)] float64."""
    model = build_model(state_dict, "nudged copy")
    model.eval()
    out = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for st in starts:
            local = tokens[st:st + SEQ_LEN + 1].to(torch.int64)
            out.append(float(model(local[None, :-1], local[None, 1:])))
    return np.array(out, dtype=np.float64)


def summarize(d: np.ndarray) -> dict:
    """d: [copies, seqs] per-sequence loss changes -> spreads by prefix length, halves correlation."""
    n = d.shape[1]
    per_seq_sd = float(d.std(axis=1, ddof=1).mean())
    prefixes = sorted({m for m in (16, 64, n // 2, n) if 2 <= m <= n})
    spread = [{"seqs": m, "sd_of_mean": float(d[:, :m].mean(axis=1).std(ddof=1)),
               "iid_prediction": per_seq_sd / np.sqrt(m)} for m in prefixes]
    h1, h2 = d[:, :n // 2].mean(axis=1), d[:, n // 2:].mean(axis=1)
    return {"per_sequence_sd": per_seq_sd, "spread": spread, "first_half": h1.tolist(), "second_half": h2.tolist(),
            "halves_correlation": float(np.corrcoef(h1, h2)[0, 1]), "mean_change": d.mean(axis=1).tolist()}


def sequences_to_resolve(per_seq_sd: float) -> list[dict]:
    """For each budget step of the solver's sweep: the sequences needed to order its two artifacts."""
    rows = [r for r in json.loads((RESULTS / "budget.json").read_text())["rows"] if r["kind"] == "solver"]
    rows.sort(key=lambda r: r["total_bytes"])
    out = []
    for a, b in zip(rows, rows[1:]):
        diff = a["predicted"] - b["predicted"]
        need = (2 * np.sqrt(2) * per_seq_sd / diff) ** 2 if diff > 0 else float("inf")
        out.append({"from": int(a["label"]), "to": int(b["label"]), "predicted_from": a["predicted"],
                    "predicted_to": b["predicted"], "difference": diff, "sequences_needed": need})
    return out


def markdown(res: dict) -> str:
    s = res["summary"]
    lines = ["# Does the eval's noise average away with more tokens? (bench/studies/eval_noise.py)", "",
             f"Machine: {res['machine']}", "", __doc__.split("\n\n", 1)[1].split("Run:")[0].strip(), "",
             f"{res['copies']} copies at relative noise {res['relative_noise']:g}; {res['seqs']} sequences "
             f"(one in every {res['every']} of the val shard's first {res['seqs'] * res['every']}); "
             f"{res['seconds']:.0f} s. Loss in nats a token (val_bpb is about {res['bpb_per_nat']:.3f} x that "
             "on these tokens).", "",
             "| sequences | spread of the copies' mean change (sd) | if independent per sequence |",
             "|---:|---:|---:|"]
    for row in s["spread"]:
        lines.append(f"| {row['seqs']} | {row['sd_of_mean']:.6f} | {row['iid_prediction']:.6f} |")
    lines += ["", f"Per-sequence sd of a copy's change: {s['per_sequence_sd']:.6f}.", "",
              "| copy | mean change, first half | second half |", "|---:|---:|---:|"]
    for i, (a, b) in enumerate(zip(s["first_half"], s["second_half"])):
        lines.append(f"| {i + 1} | {a:+.6f} | {b:+.6f} |")
    lines += ["", f"Correlation over copies of the two halves' mean change: **{s['halves_correlation']:.2f}**.", ""]
    tr = res.get("train")
    if tr:
        lines += [f"On {tr['seqs']} train-shard sequences (one in every {res['every']}):", "",
                  "| copy | mean change, val | mean change, train |", "|---:|---:|---:|"]
        lines += [f"| {i + 1} | {v:+.6f} | {t:+.6f} |" for i, (v, t) in enumerate(zip(tr["val_mean_change"],
                                                                                       tr["mean_change"]))]
        lines += ["", f"Correlation over copies of the mean change on val and on train text: "
                  f"**{tr['correlation_with_val']:.2f}**.", ""]
    lines += ["| sweep step (bench/results/budget.json) | predicted damages (nats) | difference D | sequences to order them at 2 sigma |",
              "|---|---|---:|---:|"]
    for row in res["resolve"]:
        lines.append(f"| {row['from']:,} -> {row['to']:,} B | {row['predicted_from']:.3e} -> {row['predicted_to']:.3e} | "
                     f"{row['difference']:.2e} | {row['sequences_needed']:,.0f} |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seqs", type=int, default=256)
    ap.add_argument("--every", type=int, default=3)
    ap.add_argument("--copies", type=int, default=6)
    ap.add_argument("--train-seqs", type=int, default=0, help="also score this many train-shard sequences")
    args = ap.parse_args()
    machine = machine_description()
    sd = torch.load(CHECKPOINT, weights_only=True)
    tokens = load_val_tokens(SHARED / "sp1024", SEQ_LEN, None)
    starts = [i * args.every * SEQ_LEN for i in range(args.seqs)]
    if starts[-1] + SEQ_LEN + 1 > tokens.numel():
        raise SystemExit(f"--seqs {args.seqs} --every {args.every} runs past the val shard's {tokens.numel()} tokens")
    t0 = time.perf_counter()
    raw = sequence_losses(sd, tokens, starts)
    nudged = nudged_copies(sd, args.copies)
    copies = [sequence_losses(c, tokens, starts) - raw for c in nudged]
    train = None
    if args.train_seqs:
        train_tokens = torch.from_numpy(read_shard(SHARED / "sp1024" / "fineweb_train_000000.bin").astype(np.int64))
        tstarts = [i * args.every * SEQ_LEN for i in range(args.train_seqs)]
        traw = sequence_losses(sd, train_tokens, tstarts)
        tmean = [float((sequence_losses(c, train_tokens, tstarts) - traw).mean()) for c in nudged]
        vmean = [float(d.mean()) for d in copies]
        train = {"seqs": args.train_seqs, "mean_change": tmean, "val_mean_change": vmean,
                 "correlation_with_val": float(np.corrcoef(tmean, vmean)[0, 1])}
    from pgcompress.eval.byte_tables import build_byte_tables, load_tokenizer

    tables = build_byte_tables(load_tokenizer(SHARED / "tokenizers" / "fineweb_1024_bpe.model"), 1024)
    n_tok, n_bytes = 0.0, 0.0
    for st in starts:
        local = tokens[st:st + SEQ_LEN + 1].to(torch.int64)
        n_tok += SEQ_LEN
        n_bytes += float(tables.count_bytes(local[:-1], local[1:]))
    res = {"machine": machine, "seqs": args.seqs, "every": args.every, "copies": args.copies,
           "relative_noise": RELATIVE_NOISE, "seconds": time.perf_counter() - t0,
           "bpb_per_nat": n_tok / n_bytes / np.log(2), "raw_mean_loss": float(raw.mean()),
           "summary": summarize(np.stack(copies)), "train": train}
    res["resolve"] = sequences_to_resolve(res["summary"]["per_sequence_sd"])
    (RESULTS / "eval_noise.json").write_text(json.dumps(res, indent=1) + "\n")
    (RESULTS / "eval_noise.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
