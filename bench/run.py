"""One command for the whole report: bench/results/REPORT.md and its PNGs, from the shared data.

    python -m bench.run [--quick]

Measured in this run, on this machine (named in the report), on the shared 17M-parameter
checkpoint and the first --max-tokens targets of its val shard:
- bytes and val_bpb gap per method against the reference int8+zlib export (its bytes computed here
  with the reference's own format, bench/int8_ref_size.py; its weights are int8-ref's, bit for bit);
- the budget solver's rate-distortion curve and uniform methods on the same calibration
  (pgcompress.budget.sweep, what `pgc sweep` runs);
- pgcompress's coded streams against zlib / zstd-22 / lzma-9e / brotli-11 on the same payload
  (bench/coders.py);
- pack, unpack, isolated-decoder decode and eval times.
Kernel and GPU figures come from bench/results/kernels.json and gpu.json where another run wrote
them (their own machine is quoted); otherwise the report says "not measured on this machine".

--quick (a 2-core CPU, under 15 minutes): 16,384 eval tokens, 8 calibration sequences, the solver
at 16 MB and at the reference's size, uniform int8-ref and int6-gptq, the int8-ref payload only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
from bench.coders import generic_sizes, payload
from bench.int8_ref_size import reference_file_bytes
from bench.machine import machine_description

import pgcompress
from pgcompress.budget import prepare
from pgcompress.budget.sweep import SweepRow, plot_sweep, run_sweep
from pgcompress.eval.runner import EvalOptions
from pgcompress.quant.calibration import CalibConfig
from pgcompress.submission.decoder import build_decoder
from pgcompress.submission.isolated import run_isolated

REPO = BENCH.parent
DATA = REPO.parent / "shared" / "data"
CKPT = DATA / "checkpoints" / "ref_sp1024_9x512.pt"
TRAIN = str(DATA / "sp1024" / "fineweb_train_*.bin")
RESULTS = BENCH / "results"
REF_BYTES_PUBLISHED = 13_905_647  # data/README.md: the reference export of this checkpoint
CONFIGS = {
    "quick": {"max_tokens": 16_384, "calib_seqs": 8, "budgets": [16_000_000],
              "uniform": ("int8-ref", "int6-gptq"), "payloads": ["int8-ref"]},
    "full": {"max_tokens": 65_536, "calib_seqs": 64,
             "budgets": [4_000_000, 6_000_000, 8_000_000, 10_000_000, 12_000_000, 14_000_000, 16_000_000],
             "uniform": ("int8-ref", "int6-rtn", "int5-rtn", "int6-gptq", "int5-gptq", "int4-gptq"),
             "payloads": ["int8-ref", "int6", "int5"]},
}
EXTERNAL = {"kernels": "Triton kernels (bench/results/kernels.json)", "gpu": "GPU figures (bench/results/gpu.json)"}


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def rate_distortion(sd, ckpt: Path, ref_bytes: int, cfg, tmp: Path, log) -> dict:
    """The solver at each budget (and at the reference's size) plus uniform methods, all scored.

    The 16 MB solve is timed on its own (cold caches, as `pgc pack` runs it) and scored together
    with the int8-ref artifact, which also gives their eval times; the rest is one `pgc sweep`."""
    from pgcompress.budget import pack_to_budget
    from pgcompress.eval.runner import run

    calib = CalibConfig(shards=TRAIN, seqs=cfg["calib_seqs"])
    prepared, prepare_s = timed(prepare, sd, calib)
    log(f"calibration + candidate table: {prepare_s:.0f} s")
    sol16, solve_s = timed(pack_to_budget, sd, 16_000_000, prepared=prepared)
    path16 = tmp / "solver_16000000.pgc"
    path16.write_bytes(sol16.data)
    log(f"solver at 16,000,000 B: {solve_s:.0f} s, {sol16.total_bytes:,} B")
    opts = EvalOptions(data_path=DATA / "sp1024", tokenizer_path=DATA / "tokenizers" / "fineweb_1024_bpe.model",
                       max_tokens=cfg["max_tokens"], device="cpu")
    budgets = [b for b in cfg["budgets"] if b != 16_000_000] + [ref_bytes]
    (rows, raw), sweep_s = timed(run_sweep, ckpt, sd, budgets, prepared, tmp, opts, uniform=cfg["uniform"])
    log(f"sweep ({len(rows)} artifacts packed and scored): {sweep_s:.0f} s")
    int8_row = next(r for r in rows if r.kind == "uniform" and r.label == "int8-ref")
    res16, res_int8 = run([path16, Path(int8_row.artifact)], replace(opts, label=None))
    rows.append(SweepRow("solver", "16000000", sol16.total_bytes, sol16.model_bytes, sol16.headroom,
                         sol16.predicted, res16.val_bpb, res16.val_bpb - raw.val_bpb, str(path16)))
    evals = {"raw": raw.eval_ms / 1000, "int8-ref": res_int8.eval_ms / 1000, "solver 16 MB": res16.eval_ms / 1000}
    return {"rows": rows, "raw": raw, "prepare_s": prepare_s, "solve_16_s": solve_s, "sweep_s": sweep_s,
            "calibration": prepared.calibration, "eval_s": evals, "int8_path": int8_row.artifact,
            "path16": str(path16), "rescored_same": res_int8.val_bpb == int8_row.val_bpb}


def timings(sd, rd: dict, log) -> dict:
    """Pack, unpack and isolated-decoder decode time of int8-ref and of the solver's 16 MB artifact."""
    int8_data, int8_pack_s = timed(pgcompress.pack, sd, method="int8-ref", submittable=True)
    out = {"repacked_same": int8_data == Path(rd["int8_path"]).read_bytes(),
           "int8-ref": {"pack_s": int8_pack_s, "data": int8_data},
           "solver 16 MB": {"pack_s": rd["prepare_s"] + rd["solve_16_s"], "data": Path(rd["path16"]).read_bytes()}}
    for label in ("int8-ref", "solver 16 MB"):
        row = out[label]
        data = row.pop("data")
        _, row["unpack_s"] = timed(pgcompress.unpack, data)
        src = build_decoder(data)
        try:
            _, row["isolated_decode_s"] = run_isolated(src, data, repeats=2, threads=torch.get_num_threads())
        except subprocess.CalledProcessError as exc:  # a finding to report, not a reason to lose the run
            last = (exc.stderr or "").strip().splitlines()
            row["isolated_decode_s"] = None
            row["isolated_decode_error"] = last[-1] if last else f"exit code {exc.returncode}"
        row["decoder_bytes"] = len(src.encode("utf-8"))
        row["model_bytes"] = len(data)
        row["eval_s"] = rd["eval_s"][label]
        log(f"{label}: unpack {row['unpack_s']:.1f} s, isolated decode "
            f"{row.get('isolated_decode_error') or format(row['isolated_decode_s'], '.1f') + ' s'}")
    out["raw"] = {"eval_s": rd["eval_s"]["raw"]}
    out["eval_tokens"] = rd["raw"].token_count
    return out


def codecs(sd, kinds, pgc_bytes: dict, log) -> dict:
    """Generic compressors on the raw payload vs pgcompress's per-stream coding of the same streams."""
    out = {}
    for kind in kinds:
        items = payload(sd, kind)
        raw = b"".join(a.tobytes() for _, _, a in items)
        sizes, s = timed(generic_sizes, raw, False)
        out[kind] = {"raw_bytes": len(raw), "generic": sizes, "generic_s": s, "pgcompress": pgc_bytes.get(kind)}
        log(f"codecs on the {kind} payload: {s:.0f} s")
    return out


def external(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def earlier_results() -> list[tuple[str, str]]:
    """(file, machine) for every bench/results/*.json this run did not write."""
    rows = []
    for p in sorted(RESULTS.glob("*.json")):
        if p.name in ("report.json", "kernels.json", "gpu.json"):
            continue
        try:
            d = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        machine = d.get("machine") if isinstance(d, dict) else None
        if isinstance(machine, dict):
            machine = ", ".join(f"{k} {v}" for k, v in machine.items() if v is not None)
        rows.append((p.name, machine or "not recorded in the file"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the reduced run for a 2-core CPU (under 15 minutes)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--max-tokens", type=int, help="override the mode's eval tokens")
    ap.add_argument("--calib-seqs", type=int, help="override the mode's calibration sequences")
    ap.add_argument("--ckpt", type=Path, default=CKPT, help="another reference-architecture sp1024 checkpoint")
    ap.add_argument("--render-only", action="store_true",
                    help="re-write REPORT.md and the PNGs from --out's report.json, measuring nothing")
    args = ap.parse_args()
    if args.render_only:
        return render(json.loads((args.out / "report.json").read_text()), args.out)
    mode = "quick" if args.quick else "full"
    cfg = dict(CONFIGS[mode])
    for key in ("max_tokens", "calib_seqs"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    machine = machine_description()

    def log(msg):
        print(f"[{time.perf_counter() - t_start:6.0f} s] {msg}", flush=True)

    torch.manual_seed(0)
    sd = pgcompress.load_checkpoint(args.ckpt)
    params = sum(t.numel() for t in sd.values())
    ref_bytes, ref_s = timed(reference_file_bytes, sd)
    log(f"reference int8 + zlib-9 export: {ref_bytes:,} B ({ref_s:.0f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        rd = rate_distortion(sd, args.ckpt, ref_bytes, cfg, Path(tmp), log)
        times = timings(sd, rd, log)
        int8_model = next(r.model_bytes for r in rd["rows"] if r.kind == "uniform" and r.label == "int8-ref")
    codec = codecs(sd, cfg["payloads"], {"int8-ref": int8_model}, log)
    report = {
        "mode": mode, "machine": machine, "checkpoint": args.ckpt.name, "params": params, "max_tokens": cfg["max_tokens"],
        "calib_seqs": cfg["calib_seqs"], "calibration": rd["calibration"], "torch_threads": torch.get_num_threads(),
        "rescored_same": rd["rescored_same"],
        "reference": {"bytes_computed": ref_bytes, "bytes_published": REF_BYTES_PUBLISHED, "export_s": ref_s},
        "raw": {"val_loss": rd["raw"].val_loss, "val_bpb": rd["raw"].val_bpb, "bytes": rd["raw"].artifact_bytes},
        "rows": [asdict(r) | {"artifact": ""} for r in rd["rows"]],
        "prepare_s": rd["prepare_s"], "sweep_s": rd["sweep_s"], "times": times, "codecs": codec,
        "external": {k: external(k) for k in EXTERNAL}, "earlier": earlier_results(),
        "load_average_start": load_start, "load_average_end": os.getloadavg(),
        "duration_s": time.perf_counter() - t_start,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    report["duration_s"] = time.perf_counter() - t_start
    (args.out / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True, default=str) + "\n")
    render(report, args.out)
    log(f"wrote {args.out / 'REPORT.md'}")


def render(report: dict, out: Path) -> None:
    """REPORT.md and its PNGs from the measurements alone (report.json)."""
    rows = [SweepRow(**{k: v for k, v in r.items()}) for r in report["rows"]]
    plot_sweep(rows, out / "report_rd.png",
               f"{report['checkpoint']}: first {report['max_tokens']:,} val tokens, CPU ({report['mode']})")
    plot_bytes(report, out / "report_bytes.png")
    plot_codecs(report, out / "report_codecs.png")
    (out / "REPORT.md").write_text(markdown(report))


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def markdown(r: dict) -> str:
    ref = r["reference"]
    raw = r["raw"]
    rows = sorted(r["rows"], key=lambda x: x["total_bytes"])
    int8 = next(x for x in rows if x["kind"] == "uniform" and x["label"] == "int8-ref")
    la0, la1 = r["load_average_start"], r["load_average_end"]
    lines = [
        f"# pgcompress report (`python -m bench.run{' --quick' if r['mode'] == 'quick' else ''}`)", "",
        f"Every figure below was measured by this run unless a section names another file. Machine: {r['machine']}. "
        f"Run time {r['duration_s'] / 60:.1f} min; 1/5/15-minute load average {la0[0]:.2f}/{la0[1]:.2f}/{la0[2]:.2f} "
        f"at the start, {la1[0]:.2f}/{la1[1]:.2f}/{la1[2]:.2f} at the end (a shared machine slows every time below); "
        f"{r['torch_threads']} torch thread(s).",
        "",
        f"Checkpoint `{r['checkpoint']}` ({r['params']:,} params, `../shared/data`; smoother than a leaderboard model, "
        f"so compare methods, do not read leaderboard numbers into it). val_bpb: `pgc eval`'s reference procedure "
        f"(CPU, bf16 autocast, seq_len 1024) on the first {r['max_tokens']:,} target tokens of "
        f"`sp1024/fineweb_val_000000.bin`; raw checkpoint val_bpb {raw['val_bpb']:.8f}. Calibration: "
        f"{r['calib_seqs']} x 1024 train-shard windows ({r['calibration']}).",
        "",
        "## Bytes and gap per method, against the reference int8+zlib export", "",
        f"The reference export (per-row int8, `torch.save` + zlib-9) of this checkpoint, computed here with "
        f"bench/int8_ref_size.py: **{ref['bytes_computed']:,} B**"
        + (f" (data/README.md: {ref['bytes_published']:,} B). " if r["checkpoint"] == CKPT.name else ". ") +
        "Its dequantized weights are int8-ref's, bit for bit (tests/test_quant_int8_ref.py), so its val_bpb is "
        f"the int8-ref row's ({int8['val_bpb']:.8f}, gap {int8['gap']:+.6f}). Counted total = artifact + the "
        "generated decoder a self-contained submission pastes into train_gpt.py (no training code counted).",
        "",
        "| artifact | counted total B | model B | model vs reference | val_bpb | gap vs raw | gap - reference gap |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| reference int8 + zlib-9 | | {ref['bytes_computed']:,} | | {int8['val_bpb']:.8f} | {int8['gap']:+.6f} | 0 |",
    ]
    for x in rows:
        label = f"solver, budget {int(x['label']):,}" if x["kind"] == "solver" else f"uniform {x['label']}"
        lines.append(f"| {label} | {x['total_bytes']:,} | {x['model_bytes']:,} | "
                     f"{x['model_bytes'] / ref['bytes_computed'] - 1:+.2%} | {x['val_bpb']:.8f} | {x['gap']:+.6f} | "
                     f"{x['gap'] - int8['gap']:+.6f} |")
    lines += ["", "![bytes and gap per method](report_bytes.png)", "",
              "## Rate-distortion of the budget solver", "",
              "The solver (`pgc pack --budget B`) at each budget and at the reference's size, and uniform methods "
              "on the same calibration (`pgc sweep`); predicted damage = the solver's K-FAC proxy.", "",
              "| kind | budget / method | total B | headroom B | val_bpb | gap | predicted damage |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for x in rows:
        head = "" if x["headroom"] is None else f"{x['headroom']:,}"
        label = f"{int(x['label']):,}" if x["kind"] == "solver" else x["label"]
        lines.append(f"| {x['kind']} | {label} | {x['total_bytes']:,} | {head} | {x['val_bpb']:.8f} | "
                     f"{x['gap']:+.6f} | {x['predicted']:.4e} |")
    sol = sorted([x for x in rows if x["kind"] == "solver"], key=lambda x: x["total_bytes"])
    mono = all(b["gap"] <= a["gap"] + 1e-9 for a, b in zip(sol, sol[1:]))
    mono_pred = all(b["predicted"] <= a["predicted"] for a, b in zip(sol, sol[1:]))
    lines += ["", f"Measured gap non-increasing with budget: **{mono}**; predicted damage non-increasing: "
              f"**{mono_pred}** (over {r['max_tokens']:,} eval tokens).", "", "![rate-distortion](report_rd.png)", "",
              "(The plot, `pgc sweep`'s, draws on a log axis: gaps below 1e-6, negative ones included, sit at "
              "1e-6; the table has the values.)", "",
              "## Codecs on the same streams", "",
              "Payload = the quantized codes + fp16 scales + fp32 passthrough tensors, raw bytes concatenated in "
              "key order (bench/coders.py). Generic compressors take the whole payload; pgcompress codes each "
              "stream with the smallest of its submittable codecs (entropy coders for the codes, byte codecs for "
              "the rest) and its row is the whole int8-ref artifact of the table above, container header "
              "included.", ""]
    for kind, c in r["codecs"].items():
        best = min(v for v in c["generic"].values() if v is not None)
        lines += [f"### {kind} payload ({c['raw_bytes']:,} B raw; generic compressors took {c['generic_s']:.0f} s)",
                  "", "| coder | bytes | vs best generic |", "|---|---:|---:|"]
        generic = sorted(((k, v) for k, v in c["generic"].items() if v is not None), key=lambda kv: -kv[1])
        lines += [f"| {k} | {v:,} | {v / best - 1:+.2%} |" for k, v in generic]
        if c["pgcompress"]:
            lines.append(f"| **pgcompress artifact** | **{c['pgcompress']:,}** | **{c['pgcompress'] / best - 1:+.2%}** |")
        lines.append("")
    lines += ["![codecs](report_codecs.png)", "", "## Times (this machine, this run)", "",
              "| artifact | pack s | unpack s | decode s (generated decoder, no pgcompress importable) | "
              "decoder B | eval s |", "|---|---:|---:|---:|---:|---:|"]
    t = r["times"]
    for key, what in (("int8-ref", "int8-ref"), ("solver 16 MB", "solver at 16,000,000 B")):
        x = t[key]
        pack = f"{x['pack_s']:.1f}" + (" (calibration + table + solve)" if key != "int8-ref" else "")
        dec = f"{x['isolated_decode_s']:.2f}" if x["isolated_decode_s"] is not None else \
            f"FAILED: {x['isolated_decode_error']}"
        lines.append(f"| {what} | {pack} | {x['unpack_s']:.2f} | {dec} | "
                     f"{x['decoder_bytes']:,} | {x['eval_s']:.1f} |")
    lines.append(f"| raw checkpoint | | | | | {t['raw']['eval_s']:.1f} |")
    lines += ["", f"Determinism checks in this run: int8-ref packed twice gives the same bytes: "
              f"**{t['repacked_same']}**; its artifact scored twice gives the same val_bpb: **{r['rescored_same']}**.",
              "", f"Eval over {t['eval_tokens']:,.0f} target tokens; decode = best of 2 in a child process that "
              "cannot import pgcompress (pgcompress.submission.isolated). Reference export (quantize + torch.save "
              f"+ zlib-9): {ref['export_s']:.1f} s. Whole sweep (packing and scoring every row above): "
              f"{r['sweep_s']:.0f} s.", "", "## Kernels and GPU", ""]
    for key, what in EXTERNAL.items():
        ext = r["external"][key]
        if ext is None:
            lines.append(f"- {what}: not measured on this machine (no {key}.json in bench/results).")
        else:
            m = ext.get("machine", "machine not recorded in the file") if isinstance(ext, dict) else "not recorded"
            lines.append(f"- {what}: measured on {m}; see bench/results/{key}.md.")
            lines += [f"  - {k}: {_fmt(v)}" for k, v in sorted(ext.items()) if isinstance(v, (int, float, str))
                      and k != "machine"][:20] if isinstance(ext, dict) else []
    lines += ["", "## Earlier measurements in bench/results (not re-run here; each names its machine)", "",
              "| file | machine |", "|---|---|"]
    lines += [f"| {f} | {m} |" for f, m in r["earlier"]]
    lines += ["", f"Re-run: `python -m bench.run --quick` (sized for under 15 minutes on a quiet 2-core CPU; this "
              f"run took {r['duration_s'] / 60:.1f} min at the load average above) or `python -m bench.run` (more "
              "budgets, methods, payloads and tokens). `--render-only` re-writes this file and its PNGs from "
              "report.json without measuring.", ""]
    return "\n".join(lines)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_bytes(report: dict, path: Path) -> None:
    """Counted bytes and gap per artifact, the reference's bytes as a line."""
    plt = _plt()
    rows = sorted(report["rows"], key=lambda r: r["total_bytes"])
    labels = [(f"solver, budget {int(r['label']) / 1e6:.2f} MB" if r["kind"] == "solver" else r["label"])
              for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    a1.barh(labels, [r["total_bytes"] / 1e6 for r in rows], color="tab:blue")
    a1.axvline(report["reference"]["bytes_computed"] / 1e6, color="k", ls="--", label="reference int8+zlib")
    a1.axvline(16.0, color="tab:red", ls=":", label="16,000,000 B cap")
    a1.set_xlabel("counted total (artifact + decoder), MB")
    a1.legend(fontsize=8)
    a2.barh(labels, [r["gap"] for r in rows], color="tab:orange")
    a2.set_xlabel("val_bpb gap vs raw checkpoint")
    fig.suptitle(f"bytes and gap per method ({report['mode']}, {report['max_tokens']:,} tokens)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_codecs(report: dict, path: Path) -> None:
    plt = _plt()
    kinds = list(report["codecs"])
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 3.6), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        c = report["codecs"][kind]
        items = sorted(((k, v) for k, v in c["generic"].items() if v is not None), key=lambda kv: -kv[1])
        if c["pgcompress"]:
            items.append(("pgcompress (artifact)", c["pgcompress"]))
        ax.barh([k for k, _ in items], [v / 1e6 for _, v in items],
                color=["tab:gray"] * (len(items) - bool(c["pgcompress"])) + ["tab:green"] * bool(c["pgcompress"]))
        ax.set_xlabel("MB")
        ax.set_title(f"{kind} payload ({c['raw_bytes'] / 1e6:.2f} MB raw)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
