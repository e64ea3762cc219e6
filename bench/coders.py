"""Entropy coders vs generic compressors on the shared checkpoint's quantized payloads.

Payloads (codes + fp16 scales + fp32 passthrough, raw bytes concatenated in key order):
int8-ref (the reference export's codes, via pgcompress.quant.int8_ref) and per-row RTN int6,
int5, int4 (clip = row absmax, fp16 scale = absmax / qmax, q = round(w / scale_fp32)).
For each: generic codecs on the raw payload, the records' byte-shuffle + brotli-11, ``lrzip -z``
(when installed), and pgcompress's per-stream coding (codes with rans / rans-ctx2, scales and
passthrough with the best submittable byte codec), plus order-0 entropies and coder timings.

    python -m bench.coders [--ckpt PATH] [--payloads int8-ref,int6] [--no-slow]
      -> bench/results/coders.md / .json

``--code-sets int8-ref,int6-sdclip,int6-gptq`` instead compares coders on the code matrices alone
(the library's own quantizers; GPTQ calibrated on 64 train sequences; bench/code_sets.py): generic
compressors row-major and column-major, ZPAQ, DeepCABAC, and pgcompress's coders; the result is
added to coders.json and coders.md as a section of its own (``--brief-sets``: the same on a briefly
trained record-shaped model). bench/studies/coders_codes.py runs the same comparison with the study
rows added (context-model entropies, the records' pipeline, byte breakdowns).

``--artifacts int6-sdclip,int8-ref`` packs the shared checkpoint with each method (codec auto,
submittable), generates its submission decoder and times ``decode(data)`` in a child process with one
thread (wall and CPU seconds, best of 3), checking the result against ``unpack`` bit for bit. coders.json
may also hold rows measured before the first context codec (rans-ctx) and rans-ctx3 were merged into
rans-ctx2; write_md renders them as recorded, and no mode measures them again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import lzma
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import brotli
import numpy as np
import torch

from pgcompress.coding.base import StreamInfo, stream_info_for
from pgcompress.coding.choose import choose_codec
from pgcompress.coding.rans_core import read_uvarint, read_uvarints
from pgcompress.quant.int8_ref import quantize_rows
from pgcompress.registry import get_codec

from bench import code_sets
from bench.machine import machine_description

REPO = Path(__file__).resolve().parents[1]
CKPT = REPO.parent / "shared" / "data" / "checkpoints" / "ref_sp1024_9x512.pt"
SMALL = 65536


def matrix_info(q: np.ndarray) -> StreamInfo:
    return dataclasses.replace(stream_info_for(q.reshape(-1)), shape=tuple(q.shape))


def rtn_rows(w: torch.Tensor, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """w: [rows, cols] -> (q int8 [rows, cols], fp16 scale [rows]); clip = row absmax."""
    qmax = 2 ** (bits - 1) - 1
    w32 = w.float()
    scale = (w32.abs().amax(dim=1) / qmax).clamp_min(1e-8)
    q = torch.clamp(torch.round(w32 / scale[:, None]), -qmax, qmax).to(torch.int8)
    return q.numpy(), scale.to(torch.float16).numpy()


def payload(sd: dict, kind: str) -> list[tuple[str, str, np.ndarray]]:
    """[(tensor, role, array)]: codes as 2-D int8, scales fp16, small tensors fp32."""
    out = []
    for name in sorted(sd):
        t = sd[name]
        if t.is_floating_point() and t.ndim == 2 and t.numel() > SMALL:
            q, s = quantize_rows(t) if kind == "int8-ref" else rtn_rows(t, int(kind[3]))
            q = q.numpy() if isinstance(q, torch.Tensor) else q
            s = s.numpy() if isinstance(s, torch.Tensor) else s
            out += [(name, "q", q), (name, "scale", s)]
        else:  # every small tensor of this checkpoint is a control tensor: float32, as the reference
            out.append((name, "data", t.float().numpy()))
    return out


def entropy_bytes(values: np.ndarray) -> float:
    counts = np.bincount(values.reshape(-1).astype(np.int64) - int(values.min()))
    c = counts[counts > 0].astype(np.float64)
    return float(-(c * np.log2(c / c.sum())).sum() / 8)


def shuffle(raw: bytes, stride: int) -> bytes:
    n = len(raw) - len(raw) % stride
    a = np.frombuffer(raw[:n], dtype=np.uint8).reshape(-1, stride)
    return np.ascontiguousarray(a.T).tobytes() + raw[n:]


def lrzip_bytes(raw: bytes, *flags: str) -> int | None:
    """``lrzip -z`` skips ZPAQ (stores) when its LZ4 pre-test finds the data incompressible;
    ``-T`` turns that test off."""
    if not shutil.which("lrzip"):
        return None
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "payload.bin"
        src.write_bytes(raw)
        subprocess.run(["lrzip", "-z", *flags, "-q", "-f", str(src)], check=True, capture_output=True)
        return (Path(d) / "payload.bin.lrz").stat().st_size


def generic_sizes(raw: bytes, slow: bool) -> dict[str, int | None]:
    import zstandard

    zp = zstandard.ZstdCompressionParameters.from_level(22, enable_ldm=True)
    sizes = {
        "zlib-9": len(zlib.compress(raw, 9)),
        "zstd-22 (long)": len(zstandard.ZstdCompressor(compression_params=zp).compress(raw)),
        "lzma-9e": len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)),
        "brotli-11": len(brotli.compress(raw, quality=11, lgwin=24)),
    }
    if slow:
        sizes["byte-shuffle(2) + brotli-11"] = len(brotli.compress(shuffle(raw, 2), quality=11, lgwin=24))
        sizes["lrzip -z"] = lrzip_bytes(raw)
        sizes["lrzip -z -T"] = lrzip_bytes(raw, "-T")
    return sizes


def timed(fn, repeat=3):
    best = None
    for _ in range(repeat):
        t = time.perf_counter()
        res = fn()
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    return res, best


def code_streams(items, slow: bool) -> dict:
    """Per stream: the coded size with each codec for the codes; best submittable for the rest."""
    per_codec = {"rans": 0, "rans-ctx2": 0, "bitpack": 0, "brotli (per stream)": 0}
    times = {"rans": [0.0, 0.0], "rans-ctx2": [0.0, 0.0]}
    rows, other, entropy_tensor, auto = [], 0, 0.0, 0
    for name, role, arr in items:
        if role != "q":
            n, blob = choose_codec(arr.reshape(-1), stream_info_for(arr.reshape(-1)), submittable=True)
            other += len(blob)
            continue
        flat = arr.reshape(-1)
        info0, infom = stream_info_for(flat), matrix_info(arr)
        sizes = {}
        for codec, info in (("rans", info0), ("rans-ctx2", infom), ("bitpack", info0)):
            c = get_codec(codec)
            blob, te = timed(lambda: c.encode(flat, info), 1)
            out, td = timed(lambda: c.decode(blob, info), 3 if codec != "bitpack" else 1)
            assert np.array_equal(out, flat), (name, codec)
            sizes[codec] = len(blob)
            per_codec[codec] += len(blob)
            if codec in times:
                times[codec][0] += te
                times[codec][1] += td
        if slow:
            per_codec["brotli (per stream)"] += len(get_codec("brotli").encode(flat, info0))
        ent = entropy_bytes(flat)
        entropy_tensor += ent
        a = info0.hi - info0.lo + 1
        table = _rans_table_bytes(get_codec("rans").encode(flat, info0), a)
        rows.append({"tensor": name, "shape": list(arr.shape), "entropy": round(ent), "table": table,
                     "rans": sizes["rans"], "vs_entropy_plus_table": sizes["rans"] / (ent + table) - 1,
                     "rans-ctx2": sizes["rans-ctx2"]})
        auto += min(sizes.values())
    if not slow:
        per_codec.pop("brotli (per stream)")
    return {"codes": per_codec, "other_streams": other, "entropy_per_tensor": entropy_tensor,
            "pgcompress_total": auto + other, "times_s": times, "per_stream": rows}


def _rans_table_bytes(blob: bytes, a: int) -> int:
    pos = read_uvarint(blob, read_uvarint(blob, 0)[1])[1]
    return read_uvarints(blob, pos, a)[1]


_TIMER_CHILD = r"""
import importlib.util, os, sys, time
import torch
torch.set_num_threads(1)
spec = importlib.util.spec_from_file_location("decode_artifact", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
data = open(sys.argv[2], "rb").read()
for _ in range(3):
    w, c = time.perf_counter(), time.process_time()
    mod.decode(data)
    print(time.perf_counter() - w, time.process_time() - c, flush=True)
"""


def _time_decoders(variants: dict[str, tuple[bytes, str]], rounds: int = 2) -> dict[str, tuple[float, float]]:
    """Best (wall, CPU) seconds of decode(data) per variant, in a child with one thread; the variants
    take turns, so they share the machine's load."""
    import os

    best: dict[str, tuple[float, float]] = {}
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "timer.py").write_text(_TIMER_CHILD)
        for i, (label, (data, src)) in enumerate(variants.items()):
            (d / f"a{i}.pgc").write_bytes(data)
            (d / f"a{i}.py").write_text(src)
        for _ in range(rounds):
            for i, label in enumerate(variants):
                r = subprocess.run([sys.executable, str(d / "timer.py"), str(d / f"a{i}.py"), str(d / f"a{i}.pgc")],
                                   capture_output=True, text=True, check=True, env=env)
                runs = [tuple(map(float, line.split())) for line in r.stdout.strip().splitlines()]
                w, c = min(w for w, _ in runs), min(c for _, c in runs)
                old = best.get(label, (w, c))
                best[label] = (min(w, old[0]), min(c, old[1]))
    return best


def artifact_decode(sd: dict, methods: list[str], keep: Path | None) -> dict:
    """Pack each method (auto codecs, submittable), generate the decoder, check it against unpack
    in a child where pgcompress cannot be imported, and time it (one thread); sizes of the streams
    by codec."""
    import pgcompress
    from pgcompress import format as fmt
    from pgcompress.submission.decoder import build_decoder
    from pgcompress.submission.isolated import run_isolated
    from pgcompress.submission.wrap import wrap_source

    out = {}
    for method in methods:
        t = time.perf_counter()
        data = pgcompress.pack(sd, method=method, submittable=True)
        pack_s = time.perf_counter() - t
        container = fmt.parse(data, method)
        by_codec: dict[str, list[int]] = {}
        for tensor in container.tensors:
            for st in tensor.streams:
                n_b = by_codec.setdefault(st.codec, [0, 0])
                n_b[0] += 1
                n_b[1] += st.size
        src = build_decoder(data)
        got, _ = run_isolated(src, data)
        want = pgcompress.unpack(data)
        exact = list(got) == list(want) and all(
            torch.equal(got[k].reshape(-1).view(torch.uint8), want[k].reshape(-1).view(torch.uint8)) for k in want)
        if keep:
            keep.mkdir(parents=True, exist_ok=True)
            (keep / f"{method}.pgc").write_bytes(data)
            (keep / f"{method}_decoder.py").write_text(src)
        times = _time_decoders({"new": (data, src)})
        out[method] = {"artifact_bytes": len(data), "pack_s": pack_s, "streams_by_codec": by_codec,
                       "decoder_bytes": len(src.encode()),
                       "decoder_wrapped_bytes": wrap_source(src, "decode_artifact.py").counted_bytes,
                       "decode_wall_s": times["new"][0], "decode_cpu_s": times["new"][1],
                       "bit_exact": bool(exact)}
        print(method, out[method], flush=True)
    return out


def artifacts_md(res: dict, machine: str) -> list[str]:
    lines = ["# Whole-artifact decode with the generated submission decoder (bench/coders.py --artifacts)", "",
             f"Machine: {machine}", "",
             "The shared checkpoint packed with `pgcompress.pack(method=..., submittable=True)` (codec auto: "
             "the smallest submittable codec per stream), its decoder generated by `build_decoder` (minified), "
             "then `decode(data)` timed in a child process with torch, OpenMP and MKL at one thread: best of 3, "
             "wall clock and the process's CPU time (the machine is shared, so wall time includes waiting "
             "for a core; CPU time does not). 'same as unpack': the generated decoder's tensors, compared "
             "bit for bit, from a second child where pgcompress cannot be imported.", "",
             "| method | artifact bytes | code streams by codec (streams, bytes) | decoder bytes (minified) | "
             "decoder bytes (wrapped alone) | decode wall s | decode CPU s | same as unpack |",
             "|---|---:|---|---:|---:|---:|---:|---|"]
    for method, r in res.items():
        codecs = "; ".join(f"{k}: {v[0]}, {v[1]:,}" for k, v in sorted(r["streams_by_codec"].items()))
        lines.append(f"| {method} | {r['artifact_bytes']:,} | {codecs} | {r['decoder_bytes']:,} | "
                     f"{r['decoder_wrapped_bytes']:,} | {r['decode_wall_s']:.2f} | {r['decode_cpu_s']:.2f} | "
                     f"{'bit for bit' if r['bit_exact'] else 'NO'} |")
    if not any("artifact_bytes_with_rans_ctx" in r for r in res.values()):
        return lines + [""]
    lines += ["", "Recorded before rans-ctx and rans-ctx3 were merged into rans-ctx2 (no longer measured): the same "
              "artifacts with rans-ctx in place of rans-ctx2 and rans-ctx3 (each such stream "
              "re-encoded with rans-ctx, the rest and the header as packed; its own generated decoder, also checked bit for bit; "
              "the two artifacts' decodes timed taking turns, so they share the machine's load):", "",
              "| method | artifact bytes | with rans-ctx | change | decoder bytes (minified / wrapped alone) "
              "with rans-ctx | decode wall / CPU s | with rans-ctx |", "|---|---:|---:|---:|---:|---:|---:|"]
    for method, r in res.items():
        if "artifact_bytes_with_rans_ctx" in r:
            old, new = r["artifact_bytes_with_rans_ctx"], r["artifact_bytes"]
            t_old = (f"{r['decode_wall_s_with_rans_ctx']:.2f} / {r['decode_cpu_s_with_rans_ctx']:.2f}"
                     if "decode_cpu_s_with_rans_ctx" in r else "not timed")
            lines.append(f"| {method} | {new:,} | {old:,} | {new - old:+,} B ({new / old - 1:+.2%}) | "
                         f"{r['decoder_bytes_with_rans_ctx']:,} / {r['decoder_wrapped_bytes_with_rans_ctx']:,} | "
                         f"{r['decode_wall_s']:.2f} / {r['decode_cpu_s']:.2f} | {t_old} |")
    return lines + [""]


def write_md(results: dict, path: Path) -> None:
    lines = ["# Entropy coders vs generic compressors (bench/coders.py)", "",
             f"Machine: {results['machine']}", "",
             "Checkpoint: ../shared/data/checkpoints/ref_sp1024_9x512.pt (17,059,912 params). "
             "Payload = codes + fp16 scales + fp32 passthrough, raw bytes concatenated in key order. "
             "Generic rows compress that whole payload; pgcompress rows code each stream on its own "
             "(codes: named coder; scales/passthrough: smallest submittable codec; "
             "'pgcompress auto' = smallest per stream). Timings: whole payload's code streams, "
             "single-threaded, best of 3 decodes.", ""]
    for kind, r in results["payloads"].items():
        lines += [f"## {kind}", "", f"raw payload: {r['raw_bytes']:,} B; order-0 entropy of the codes "
                  f"(one distribution per tensor, no table): {r['entropy_per_tensor']:,.0f} B; "
                  f"scales + passthrough coded: {r['other_streams']:,} B", "",
                  "| coder | bytes | vs best generic |", "|---|---:|---:|"]
        best = min(v for k, v in r["generic"].items() if v is not None and k in
                   ("zlib-9", "zstd-22 (long)", "lzma-9e", "brotli-11"))
        for k, v in r["generic"].items():
            lines.append(f"| {k} (whole payload) | {v:,} | {v / best - 1:+.2%} |" if v is not None
                         else f"| {k} | not measured here (lrzip not installed) | |")
        for k, v in r["codes"].items():
            tot = v + r["other_streams"]
            lines.append(f"| {k} codes + best submittable for the rest | {tot:,} | {tot / best - 1:+.2%} |")
        lines.append(f"| **pgcompress auto** | **{r['pgcompress_total']:,}** | "
                     f"**{r['pgcompress_total'] / best - 1:+.2%}** |")
        t = r["times_s"]
        lines += ["", "Times (all code streams): " + "; ".join(
            f"{k} encode {v[0]:.2f} s, decode {v[1]:.2f} s" for k, v in t.items()) + ".", ""]
    r = results["payloads"].get("int8-ref")
    if r:
        # payloads measured before the merge into rans-ctx2 hold the first context codec's sizes
        ctx = "rans-ctx2" if all("rans-ctx2" in row for row in r["per_stream"]) else "rans-ctx"
        lines += ["## Per-stream: order-0 rans vs entropy + table (int8-ref codes)", "",
                  f"| tensor | shape | entropy B | table B | rans B | rans / (entropy + table) - 1 | {ctx} B |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for row in r["per_stream"]:
            lines.append(f"| {row['tensor']} | {'x'.join(map(str, row['shape']))} | {row['entropy']:,} | "
                         f"{row['table']:,} | {row['rans']:,} | {row['vs_entropy_plus_table']:+.3%} | "
                         f"{row[ctx]:,} |")
        worst = max(row["vs_entropy_plus_table"] for row in r["per_stream"])
        lines += ["", f"Worst stream: {worst:+.3%} (target: within 0.5%)."]
    if "code_sets" in results:
        machine = results.get("code_sets_machine", "not recorded")
        if "code_sets_pgcompress_machine" in results:
            machine += (f" (pgcompress rows and byte breakdowns re-measured with --add-pgcompress on: "
                        f"{results['code_sets_pgcompress_machine']})")
        if "code_sets_record_machine" in results:
            machine += (f" (records' pipeline rows (and, before the merge, rans-ctx3's) added with --add-record on: "
                        f"{results['code_sets_record_machine']})")
        lines += [""] + code_sets.markdown(results["code_sets"], machine)
    if "brief_sets" in results:
        lines += [""] + code_sets.brief_markdown(results["brief_sets"], results["brief_model"],
                                                 results.get("brief_machine", "not recorded"))
    if "artifacts" in results:
        lines += [""] + artifacts_md(results["artifacts"], results.get("artifacts_machine", "not recorded"))
    if "artifacts_at_3072_codes_a_lane" in results:
        earlier = results["artifacts_at_3072_codes_a_lane"]
        lines += ["## Earlier run: rans-ctx2 at 3072 codes a lane (not shipped: slower than rans-ctx, the first context "
                  "codec)", "",
                  f"Machine: {earlier['machine']}", "",
                  "| method | artifact bytes | with rans-ctx | decode wall / CPU s | with rans-ctx |",
                  "|---|---:|---:|---:|---:|"]
        for method, r in earlier["results"].items():
            lines.append(f"| {method} | {r['artifact_bytes']:,} | {r['artifact_bytes_with_rans_ctx']:,} | "
                         f"{r['decode_wall_s']:.2f} / {r['decode_cpu_s']:.2f} | "
                         f"{r['decode_wall_s_with_rans_ctx']:.2f} / {r['decode_cpu_s_with_rans_ctx']:.2f} |")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", type=Path, default=CKPT)
    ap.add_argument("--payloads", default="int8-ref,int6,int5,int4")
    ap.add_argument("--no-slow", action="store_true", help="skip byte-shuffle+brotli, lrzip, per-stream brotli")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "coders")
    ap.add_argument("--add-lrzip-T", action="store_true",
                    help="only add 'lrzip -z -T' rows to an existing results JSON (ZPAQ is slow)")
    ap.add_argument("--code-sets", default=None,
                    help="compare coders on these code sets only (int8-ref,int6-sdclip,int6-gptq)")
    ap.add_argument("--cache", type=Path, default=None, help="directory to keep/reuse the quantized codes")
    ap.add_argument("--brief-sets", default=None,
                    help="the code-set comparison on a briefly trained record-shaped model's codes "
                         "(int6-sdclip,int8-ref,int6-gptq); trains it (~5 min) unless --cache holds it")
    ap.add_argument("--artifacts", default=None,
                    help="time the generated decoder on whole artifacts of these methods (int6-sdclip,int8-ref)")
    args = ap.parse_args()
    sd = torch.load(args.ckpt, map_location="cpu", weights_only=True)
    if args.artifacts:
        path = args.out.with_suffix(".json")
        results = json.loads(path.read_text())
        results["artifacts_machine"] = machine_description()
        results["artifacts"] = artifact_decode(sd, args.artifacts.split(","), args.cache)
        path.write_text(json.dumps(results, indent=1, sort_keys=True))
        write_md(results, args.out.with_suffix(".md"))
        return
    if args.brief_sets:
        path = args.out.with_suffix(".json")
        results = json.loads(path.read_text())
        brief_sd, info = code_sets.brief_model(args.cache)
        results["brief_machine"] = machine_description()
        results["brief_model"] = info
        results["brief_sets"] = code_sets.compare(brief_sd, args.brief_sets.split(","),
                                                  args.cache / "brief" if args.cache else None)
        path.write_text(json.dumps(results, indent=1, sort_keys=True))
        write_md(results, args.out.with_suffix(".md"))
        return
    if args.code_sets:
        path = args.out.with_suffix(".json")
        results = json.loads(path.read_text()) if path.exists() else {"machine": machine_description(), "payloads": {}}
        results["code_sets_machine"] = machine_description()
        results["code_sets"] = code_sets.compare(sd, args.code_sets.split(","), args.cache)
        path.write_text(json.dumps(results, indent=1, sort_keys=True))
        write_md(results, args.out.with_suffix(".md"))
        return
    if args.add_lrzip_T:
        results = json.loads(args.out.with_suffix(".json").read_text())
        for kind, r in results["payloads"].items():
            raw = b"".join(a.tobytes() for _, _, a in payload(sd, kind))
            r["generic"]["lrzip -z -T"] = lrzip_bytes(raw, "-T")
            print(kind, r["generic"]["lrzip -z -T"], flush=True)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, sort_keys=True))
        write_md(results, args.out.with_suffix(".md"))
        return
    results = {"machine": machine_description(), "checkpoint": str(args.ckpt), "payloads": {}}
    for kind in args.payloads.split(","):
        items = payload(sd, kind)
        raw = b"".join(a.tobytes() for _, _, a in items)
        r = {"raw_bytes": len(raw), "generic": generic_sizes(raw, not args.no_slow)}
        r.update(code_streams(items, not args.no_slow))
        results["payloads"][kind] = r
        print(kind, {k: v for k, v in r.items() if k != "per_stream"}, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, sort_keys=True))
    write_md(results, args.out.with_suffix(".md"))


if __name__ == "__main__":
    main()
