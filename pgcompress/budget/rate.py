"""Rate: the coded bytes of one tensor's stored form, measured by encoding it.

Each stream is encoded with the codecs the artifact can use and the smallest blob counts. For
speed, integer code matrices try the entropy coders (zlib-9 is slow on them and never smaller), large float
streams try raw and zlib, and small streams every allowed codec but the lzma ones. The final artifact picks among
all allowed codecs, so its blobs are never larger than these: the rate is an upper bound that
``pgc pack`` then tightens on the real bytes. Results are cached by stream content.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from pgcompress.coding.base import stream_info_for
from pgcompress.coding.choose import choose_codec
from pgcompress.quant.base import Encoded
from pgcompress.registry import codec_names, get_codec

# rans-ctx2 is the artifact's context codec, so the solver rates code matrices with the model the
# artifact will code them with.
SYMBOL_CODECS = ("rans-ctx2", "rans", "bitpack")
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
        allowed = [c for c in codec_names() if not self.submittable or get_codec(c).submittable]
        if info.raw_nbytes <= SMALL_STREAM_BYTES:
            return [c for c in allowed if c not in SLOW_CODECS]
        wanted = SYMBOL_CODECS if info.is_symbols else BIG_FLOAT_CODECS
        return [c for c in wanted if c in allowed]

    def stream_bytes(self, arr: np.ndarray) -> int:
        a = np.ascontiguousarray(arr)
        key = (hashlib.sha1(a.view(np.uint8).reshape(-1).data).hexdigest(), a.dtype.str, a.shape)
        if key not in self._cache:
            info = stream_info_for(a)
            _, blob = choose_codec(a.reshape(-1), info, self.codecs_for(a), self.submittable)
            self._cache[key] = len(blob)
        return self._cache[key]

    def encoded_bytes(self, name: str, shape, enc: Encoded) -> int:
        """Streams + this tensor's share of the header."""
        body = sum(self.stream_bytes(arr) for arr in enc.streams.values())
        return body + header_share(name, shape, enc)


def header_share(name: str, shape, enc: Encoded) -> int:
    entry = {"name": name, "shape": list(shape), "method": enc.method, "params": enc.params,
             "streams": [{"role": r, "dtype": a.dtype.name, "count": int(a.size), "codec": "rans-ctx2",
                          "size": 1 << 20, "crc": 4294967295, "lo": -128, "hi": 127}
                         for r, a in enc.streams.items()]}
    return int(len(json.dumps(entry, separators=(",", ":"))) * HEADER_BYTES_PER_JSON_BYTE) + 1
