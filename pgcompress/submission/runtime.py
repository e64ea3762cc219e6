"""What a generated decoder runs: read an artifact, decode its streams, dequantize its tensors.

Plain top-level functions using only torch, numpy and the standard library; ``decoder.py``
copies them (and the codec/method functions they reach) into one file. ``CODECS`` and
``METHODS`` map stored names to decode functions; the generated file keeps only the entries its
artifact uses. Sizes and checksums are checked before any stream is decoded.
"""

import json
import struct
import zlib

import numpy as np
import torch

from pgcompress.coding.bitpack import bitpack_decode
from pgcompress.coding.bytes_dec import (brotli_decode, lzma_decode, planes_brotli_decode,
                                         planes_lzma_decode, raw_decode, zlib_decode)
from pgcompress.coding.ctx_dec import rans_ctx_decode
from pgcompress.coding.rans_dec import rans0_decode
from pgcompress.errors import CodecError
from pgcompress.quant.int8_ref import int8_ref_dequantize
from pgcompress.quant.passthrough import passthrough_dequantize

CODECS = {"raw": raw_decode, "zlib": zlib_decode, "lzma": lzma_decode, "brotli": brotli_decode,
          "planes+brotli": planes_brotli_decode, "planes+lzma": planes_lzma_decode,
          "bitpack": bitpack_decode, "rans": rans0_decode, "rans-ctx": rans_ctx_decode}
METHODS = {"int8-ref": int8_ref_dequantize, "raw": passthrough_dequantize, "fp16": passthrough_dequantize,
           "bf16": passthrough_dequantize, "fp32": passthrough_dequantize}
PREAMBLE = "<4sHBBII"
MAX_HEADER = 64 << 20


def read_artifact(data):
    """artifact bytes -> [(tensor entry dict, [(stream entry dict, blob)])], sizes and CRCs checked."""
    data = memoryview(data)
    if len(data) < 16:
        raise CodecError("artifact too short")
    magic, version, hcodec, _, hsize, hcrc = struct.unpack_from(PREAMBLE, data, 0)
    if magic != b"PGCA" or version != 1 or hcodec != 0 or 16 + hsize > len(data):
        raise CodecError("not a version-1 pgcompress artifact, or a truncated one")
    packed = bytes(data[16:16 + hsize])
    if zlib.crc32(packed) != hcrc:
        raise CodecError("header checksum mismatch")
    d = zlib.decompressobj()
    header = json.loads(d.decompress(packed, MAX_HEADER))
    pos = 16 + hsize
    out = []
    for t in header["tensors"]:
        streams = []
        for s in t["streams"]:
            end = pos + s["size"]
            if end > len(data):
                raise CodecError(f"tensor {t['name']}: truncated artifact")
            blob = bytes(data[pos:end])
            if zlib.crc32(blob) != s["crc"]:
                raise CodecError(f"tensor {t['name']}: stream {s['role']} checksum mismatch")
            streams.append((s, blob))
            pos = end
        out.append((t, streams))
    if pos != len(data):
        raise CodecError("bytes after the last stream")
    return out


def decode_stream(s, blob):
    arr = CODECS[s["codec"]](blob, s["dtype"], s["count"], s.get("lo"), s.get("hi"))
    if arr.size != s["count"] or arr.dtype != np.dtype(s["dtype"]):
        raise CodecError(f"stream {s['role']}: decoded {arr.size} x {arr.dtype}")
    return arr


def decode(data):
    """artifact bytes -> {name: tensor}, the dequantized state dict (what ``pgc unpack`` gives)."""
    state = {}
    for t, streams in read_artifact(data):
        arrays = {s["role"]: decode_stream(s, blob) for s, blob in streams}
        dtype = getattr(torch, t["dtype"])
        state[t["name"]] = METHODS[t["method"]](t["method"], t["params"], arrays, tuple(t["shape"]), dtype).contiguous()
    return state
