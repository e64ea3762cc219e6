"""Rate: the coded bytes of one tensor's stored form, measured by encoding it (or, for integer
code matrices, estimated from the context model).

Each stream is encoded with the codecs the artifact can use and the smallest blob counts. For
speed, large float streams try raw and zlib, and small streams every allowed codec but the lzma
ones. The final artifact picks among all allowed codecs, so its blobs are never larger than these:
the rate is an upper bound that ``pgc pack`` then tightens on the real bytes. Results are cached
by stream content.

Integer code matrices are not coded by rans-ctx2 here: fitting all the models it tries (five width
quantizations, 41 widths per context, and centres) took ~0.5-0.8 s per 512 x 1,024 matrix, most of
a candidate table's time, and ~0.1-0.2 s on matrices of a few thousand values, where the fits and
the coding loop do not shrink with the matrix (a 0.2M-parameter model's pack: 51 s with them, two
thirds of it those fits). Their rate is the ideal size of the smaller of two of those models (no
centres, and the rounded row and column means as centres where any is not 0; 4 width steps an
octave, 9 widths per context) plus every lane's final state: never below the codec's own choice
(the smallest of its models, really coded), within a few percent above it on large matrices and on
the candidates of small models (0.0-1.4% on a 0.2M-parameter model's 198 code matrices), up to ~25%
on small random ones with row or column offsets (tests/test_budget_rate.py); the solver's rounds
measure what they choose. Large code matrices are not tried with byte compressors
(``choose.auto_codecs``), and order-0 rans and bitpack only where the values' order-0 entropy is
below the estimate (a nearly constant matrix): on real code matrices it never is
(bench/results/generic_vs_symbol.md). Small ones still try every allowed codec but rans-ctx2 and
the lzma ones.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np

from pgcompress.coding.base import StreamInfo, stream_info_for
from pgcompress.coding.choose import auto_codecs, choose_codec
from pgcompress.coding.ctx_model import fit_centred_model, fit_centres, fit_widths_model, model_bytes
from pgcompress.coding.rans_core import lanes_for
from pgcompress.coding.rans_ctx2 import SYMBOLS_PER_LANE, matrix_shape
from pgcompress.errors import CodecError
from pgcompress.quant.base import Encoded
from pgcompress.registry import get_codec

# rans-ctx2 is the artifact's context codec, so the solver rates code matrices with the model the
# artifact will code them with.
CTX_CODEC = "rans-ctx2"
ESTIMATE_WIDTH_STEPS = (4,)
ESTIMATE_GRID_POINTS = 9  # widths tried per context (the codec tries 41): a 4.5x cheaper fit, ~0.1% larger
# a lane's final state (4 B) over-covers the coder's measured excess over the ideal size (~2.6 B a lane)
LANE_BYTES = 4
BIG_FLOAT_CODECS = ("raw", "zlib")
# lzma at preset 9e spends ~0.1 s setting up even on a 1 KB stream: too slow to try on every
# candidate's streams; the final artifact still tries it.
SLOW_CODECS = ("lzma", "planes+lzma")
SMALL_STREAM_BYTES = 64 << 10
# Per-tensor header entry: JSON of name, shape, method, params and per-stream fields, zlib'd with
# the rest of the header (names and keys repeat, so it packs well): 3.3-3.5 KB for the shared
# checkpoint's 92 tensors, ~0.1 compressed bytes per JSON byte. The solver measures the real header.
HEADER_BYTES_PER_JSON_BYTE = 0.12


class RateMeter:
    def __init__(self, submittable: bool = True):
        self.submittable = submittable
        self._cache: dict[tuple, int] = {}

    def codecs_for(self, arr: np.ndarray) -> list[str]:
        info = stream_info_for(arr)
        allowed = [c for c in auto_codecs(info, self.submittable) if not self.submittable or get_codec(c).submittable]
        if info.raw_nbytes <= SMALL_STREAM_BYTES:
            return [c for c in allowed if c not in SLOW_CODECS]
        return allowed if info.is_symbols else [c for c in BIG_FLOAT_CODECS if c in allowed]

    def stream_bytes(self, arr: np.ndarray) -> int:
        a = np.ascontiguousarray(arr)
        key = (hashlib.sha1(a.view(np.uint8).reshape(-1).data).hexdigest(), a.dtype.str, a.shape)
        if key not in self._cache:
            info = stream_info_for(a)
            codecs = self.codecs_for(a)
            sizes = []
            if CTX_CODEC in codecs:
                est = ctx_estimate(a, info)
                codecs = [c for c in codecs if c != CTX_CODEC]
                if est is not None:
                    sizes.append(est)
                    # a large matrix tries only order-0 coders beside it (choose.auto_codecs), and none
                    # of them can be smaller where the order-0 entropy is not; small ones keep theirs
                    if info.raw_nbytes > SMALL_STREAM_BYTES and order0_bytes(a) >= est:
                        codecs = []
            if codecs or not sizes:
                sizes.append(len(choose_codec(a.reshape(-1), info, codecs or [CTX_CODEC], self.submittable)[1]))
            self._cache[key] = min(sizes)
        return self._cache[key]

    def encoded_bytes(self, name: str, shape, enc: Encoded) -> int:
        """Streams + this tensor's share of the header."""
        body = sum(self.stream_bytes(arr) for arr in enc.streams.values())
        return body + header_share(name, shape, enc)


def ctx_estimate(a: np.ndarray, info: StreamInfo) -> int | None:
    """Estimated rans-ctx2 blob bytes of a code matrix (see the module docstring), or None where the
    codec would not take it."""
    if not get_codec(CTX_CODEC).accepts(info):
        return None
    q = a.reshape(matrix_shape(info))
    try:
        models = [fit_widths_model(q, int(info.lo), int(info.hi), ESTIMATE_WIDTH_STEPS, ESTIMATE_GRID_POINTS)]
    except CodecError:
        return None
    rc, cc = fit_centres(q)
    if rc.any() or cc.any():
        centred = fit_centred_model(q, rc if rc.any() else None, cc if cc.any() else None, ESTIMATE_WIDTH_STEPS,
                                    ESTIMATE_GRID_POINTS)
        models += [] if centred is None else [centred]
    return math.ceil(min(model_bytes(m) for m in models)) + LANE_BYTES * lanes_for(a.size, SYMBOLS_PER_LANE)


def order0_bytes(a: np.ndarray) -> float:
    """The empirical order-0 entropy of the values, in bytes: a lower bound on any coder that
    gives every value one fixed code (order-0 rans, bitpack)."""
    flat = a.reshape(-1).astype(np.int64)
    counts = np.bincount(flat - flat.min())
    counts = counts[counts > 0]
    p = counts / flat.size
    return float(-(counts * np.log2(p)).sum() / 8)


def header_share(name: str, shape, enc: Encoded) -> int:
    entry = {"name": name, "shape": list(shape), "method": enc.method, "params": enc.params,
             "streams": [{"role": r, "dtype": a.dtype.name, "count": int(a.size), "codec": "rans-ctx2",
                          "size": 1 << 20, "crc": 4294967295, "lo": -128, "hi": 127}
                         for r, a in enc.streams.items()]}
    return int(len(json.dumps(entry, separators=(",", ":"))) * HEADER_BYTES_PER_JSON_BYTE) + 1
