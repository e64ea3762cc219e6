"""Entropy coders vs generic compressors on the shared checkpoint's quantized payloads.

Payloads (codes + fp16 scales + fp32 passthrough, raw bytes concatenated in key order):
int8-ref (the reference export's codes, via pgcompress.quant.int8_ref) and per-row RTN int6,
int5, int4 (clip = row absmax, fp16 scale = absmax / qmax, q = round(w / scale_fp32)).
For each: generic codecs on the raw payload, the records' byte-shuffle + brotli-11, ``lrzip -z``
(when installed), and pgcompress's per-stream coding (codes with rans / rans-ctx, scales and
passthrough with the best submittable byte codec), plus order-0 entropies and coder timings.

    python bench/coders.py [--ckpt PATH] [--payloads int8-ref,int6] [--no-slow]
      -> bench/results/coders.md / .json

``--code-sets int8-ref,int6-sdclip,int6-gptq`` instead compares coders on the code matrices alone
(the library's own quantizers; GPTQ calibrated on 64 train sequences): context-model entropies
(theory), generic compressors row-major and column-major, ZPAQ, DeepCABAC, and pgcompress's coders;
the result is added to coders.json and coders.md as a section of its own.
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
from pgcompress.quant.int8_ref import quantize_rows
from pgcompress.registry import get_codec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_description  # noqa: E402
import coders_codes  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CKPT = REPO.parent / "shared" / "data" / "checkpoints" / "ref_sp1024_9x512.pt"
SMALL = 65536


@dataclasses.dataclass(frozen=True)
class _ShapedInfo(StreamInfo):
    shape: tuple | None = None


def matrix_info(q: np.ndarray) -> StreamInfo:
    base = stream_info_for(q.reshape(-1))
    if "shape" in {f.name for f in dataclasses.fields(StreamInfo)}:
        return dataclasses.replace(base, shape=tuple(q.shape))
    return _ShapedInfo(base.dtype, base.count, base.lo, base.hi, tuple(q.shape))


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
    per_codec = {"rans": 0, "rans-ctx": 0, "bitpack": 0, "brotli (per stream)": 0}
    times = {"rans": [0.0, 0.0], "rans-ctx": [0.0, 0.0]}
    rows, other, entropy_tensor, auto = [], 0, 0.0, 0
    for name, role, arr in items:
        if role != "q":
            n, blob = choose_codec(arr.reshape(-1), stream_info_for(arr.reshape(-1)), submittable=True)
            other += len(blob)
            continue
        flat = arr.reshape(-1)
        info0, infom = stream_info_for(flat), matrix_info(arr)
        sizes = {}
        for codec, info in (("rans", info0), ("rans-ctx", infom), ("bitpack", info0)):
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
                     "rans-ctx": sizes["rans-ctx"]})
        auto += min(sizes["rans"], sizes["rans-ctx"], sizes["bitpack"])
    if not slow:
        per_codec.pop("brotli (per stream)")
    return {"codes": per_codec, "other_streams": other, "entropy_per_tensor": entropy_tensor,
            "pgcompress_total": auto + other, "times_s": times, "per_stream": rows}


def _rans_table_bytes(blob: bytes, a: int) -> int:
    from pgcompress.coding.rans_dec import read_uvarint, read_uvarints

    pos = read_uvarint(blob, read_uvarint(blob, 0)[1])[1]
    return read_uvarints(blob, pos, a)[1]


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
        lines += ["", f"Times (all code streams): rans encode {t['rans'][0]:.2f} s, decode {t['rans'][1]:.2f} s; "
                  f"rans-ctx encode {t['rans-ctx'][0]:.2f} s, decode {t['rans-ctx'][1]:.2f} s.", ""]
    r = results["payloads"].get("int8-ref")
    if r:
        lines += ["## Per-stream: order-0 rans vs entropy + table (int8-ref codes)", "",
                  "| tensor | shape | entropy B | table B | rans B | rans / (entropy + table) - 1 | rans-ctx B |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for row in r["per_stream"]:
            lines.append(f"| {row['tensor']} | {'x'.join(map(str, row['shape']))} | {row['entropy']:,} | "
                         f"{row['table']:,} | {row['rans']:,} | {row['vs_entropy_plus_table']:+.3%} | "
                         f"{row['rans-ctx']:,} |")
        worst = max(row["vs_entropy_plus_table"] for row in r["per_stream"])
        lines += ["", f"Worst stream: {worst:+.3%} (target: within 0.5%)."]
    if "code_sets" in results:
        lines += [""] + coders_codes.markdown(results["code_sets"], results.get("code_sets_machine", "not recorded"))
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
    ap.add_argument("--add-deepcabac", action="store_true",
                    help="with --code-sets: only re-measure DeepCABAC and rans-ctx's byte breakdown "
                         "for the sets already in the JSON")
    args = ap.parse_args()
    sd = torch.load(args.ckpt, map_location="cpu", weights_only=True)
    if args.code_sets:
        path = args.out.with_suffix(".json")
        results = json.loads(path.read_text()) if path.exists() else {"machine": machine_description(), "payloads": {}}
        results["code_sets_machine"] = machine_description()
        if args.add_deepcabac:
            coders_codes.add_deepcabac(results["code_sets"], sd, args.cache)
        else:
            results["code_sets"] = coders_codes.run(sd, args.code_sets.split(","), args.cache)
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
