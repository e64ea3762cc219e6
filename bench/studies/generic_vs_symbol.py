"""Do generic byte compressors ever beat the symbol codecs on a large code matrix?

Every integer code stream over ``SMALL_STREAM_BYTES`` that the shared checkpoint's matrices give
under per-row RTN at 2-8 bits and under the waterfill ladder (Hessians from 16 x 1024 shard
tokens) is coded with every submittable codec; the table counts, per code set, the streams where
the best generic codec (zlib, lzma, brotli, byte planes) is smaller than the best symbol codec
(rans-ctx2, rans, bitpack), and the largest such margin; and the streams where order-0 rans or
bitpack is smaller than rans-ctx2 (the solver's rate estimate stands for all symbol coders). The pack's automatic codec choice skips
the byte compressors on these streams (pgcompress/coding/choose.py) on the strength of this table.

    python -m bench.studies.generic_vs_symbol     (~10 min on a 2-core CPU)
"""

from __future__ import annotations

import json

import numpy as np
import torch

import pgcompress
from bench.budget import CKPT, RESULTS, TRAIN
from bench.machine import machine_description
from pgcompress.coding.base import stream_info_for
from pgcompress.coding.choose import choose_codec
from pgcompress.coding.choose import LARGE_SYMBOL_BYTES
from pgcompress.quant.base import QuantContext
from pgcompress.quant.calibration import CalibConfig, calibrate
from pgcompress.quant.waterfill import LADDER
from pgcompress.registry import codec_names, get_codec, get_method


def compare(arr: np.ndarray) -> tuple:
    """Blob bytes: (best byte compressor, best symbol coder, best symbol coder but rans-ctx2, rans-ctx2)."""
    info = stream_info_for(arr)
    sub = [c for c in codec_names() if get_codec(c).submittable]
    generic = [c for c in sub if get_codec(c).bytes_only]
    symbol = [c for c in sub if not get_codec(c).bytes_only and get_codec(c).accepts(info)]
    flat = arr.reshape(-1)
    sizes = {c: len(get_codec(c).encode(flat, info)) for c in symbol}
    g = len(choose_codec(flat, info, generic, True)[1])
    others = [v for c, v in sizes.items() if c != "rans-ctx2"]
    return g, min(sizes.values()), min(others) if others else None, sizes.get("rans-ctx2")


def main() -> None:
    sd = pgcompress.load_checkpoint(CKPT)
    mats = {k: v for k, v in sd.items() if v.ndim == 2 and v.numel() > 65_536}
    hessians = calibrate(sd, CalibConfig(shards=TRAIN, seqs=16))
    ctx = QuantContext(hessians, memo={})
    sets = [f"int{b}-rtn" for b in range(2, 9)] + [f"wf{b:g}" for b in LADDER]
    rows = []
    for method in sets:
        n = wins = order0_wins = 0
        worst = 0.0
        total_g = total_s = 0
        for name, t in mats.items():
            if method.startswith("wf") and name not in hessians:
                continue
            enc = get_method(method).quantize(name, t, ctx)
            for arr in enc.streams.values():
                info = stream_info_for(arr)
                if not (info.is_symbols and info.raw_nbytes > LARGE_SYMBOL_BYTES):
                    continue
                g, s, o, c2 = compare(arr)
                order0_wins += c2 is None or (o is not None and o < c2)
                n += 1
                total_g += g
                total_s += s
                if g < s:
                    wins += 1
                    worst = max(worst, (s - g) / s)

        rows.append({"code_set": method, "streams": n, "generic_smaller": wins, "largest_margin": worst,
                     "other_symbol_coder_smaller_than_rans_ctx2": order0_wins,
                     "generic_bytes": total_g, "symbol_bytes": total_s})
        print(rows[-1], flush=True)
    out = {"machine": machine_description(), "rows": rows}
    (RESULTS / "generic_vs_symbol.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = ["# Generic byte compressors vs symbol codecs on large code matrices (bench/studies/generic_vs_symbol.py)",
             "", f"Machine: {out['machine']}. Shared checkpoint, every 2-D tensor over 65,536 values.", "",
             "| code set | streams | byte compressor smaller | largest margin | order-0 rans / bitpack smaller "
             "than rans-ctx2 | best byte compressor B | best symbol coder B |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['code_set']} | {r['streams']} | {r['generic_smaller']} | {100 * r['largest_margin']:.2f}% "
                     f"| {r['other_symbol_coder_smaller_than_rans_ctx2']} | {r['generic_bytes']:,} | {r['symbol_bytes']:,} |")
    (RESULTS / "generic_vs_symbol.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
