"""Per-stream codec choice: the smallest blob among the candidates, ties to the earlier name
(``codec_names()`` order, i.e. builtin.CODEC_ORDER, when no candidates are given).

The automatic choice (no candidates) skips the byte compressors (``Codec.bytes_only``) on integer
symbol streams over ``LARGE_SYMBOL_BYTES``, where a symbol coder accepts them: on the shared
checkpoint's 2-D code matrices (per-row RTN at 2-8 bits, the waterfill ladder) no byte compressor
was ever smaller (bench/results/generic_vs_symbol.md), and brotli/lzma took most of a solver's
encode time."""

from __future__ import annotations

import numpy as np

from pgcompress.coding.base import StreamInfo
from pgcompress.errors import CodecError
from pgcompress.registry import codec_names, get_codec

LARGE_SYMBOL_BYTES = 64 << 10


def choose_codec(arr: np.ndarray, info: StreamInfo, candidates: list[str] | None = None,
                 submittable: bool = False) -> tuple[str, bytes]:
    """Encode ``arr`` with every candidate codec that accepts it; return (name, smallest blob).

    candidates: codec names to try (None: every registered codec); with ``submittable`` only
    codecs a submission can decode are tried. Deterministic: the candidates' order breaks ties.
    """
    names = candidates if candidates is not None else auto_codecs(info, submittable)
    best: tuple[str, bytes] | None = None
    for name in names:
        codec = get_codec(name)
        if submittable and not codec.submittable:
            if candidates is not None:
                raise CodecError(f"codec {name!r} is not submittable (a submission cannot decode it)")
            continue
        if not codec.accepts(info):
            if candidates is not None and len(candidates) == 1:
                return _fallback(arr, info, name)
            continue
        blob = codec.encode(arr, info)
        if best is None or len(blob) < len(best[1]):
            best = (name, blob)
    if best is None:
        raise CodecError(f"no codec among {names} accepts a {info.dtype} stream")
    return best


def auto_codecs(info: StreamInfo, submittable: bool = False) -> list[str]:
    """The codecs the automatic choice tries on a stream like ``info`` (``codec_names()`` order)."""
    names = codec_names()
    if info.is_symbols and info.raw_nbytes > LARGE_SYMBOL_BYTES:
        symbol = [n for n in names if not get_codec(n).bytes_only and get_codec(n).accepts(info)
                  and (get_codec(n).submittable or not submittable)]
        if symbol:
            return symbol
    return names


def _fallback(arr: np.ndarray, info: StreamInfo, name: str) -> tuple[str, bytes]:
    # A forced codec that cannot take this stream (e.g. an entropy coder on float scales):
    # store it with the best generic byte codec rather than failing the whole pack.
    return choose_codec(arr, info, ["zlib", "lzma", "brotli"], submittable=True)
