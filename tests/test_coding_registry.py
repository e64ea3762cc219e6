"""The codec registry: CODEC_ORDER is the listing (and so the tie) order, and a new codec is one class plus
one registration line - it then packs, unpacks, and goes into a generated decoder."""

from __future__ import annotations

import numpy as np
import torch

import pgcompress
from pgcompress import format as fmt
from pgcompress import registry
from pgcompress.coding.base import Codec, stream_info_for
from pgcompress.coding.builtin import CODEC_ORDER
from pgcompress.coding.choose import choose_codec
from pgcompress.errors import CodecError
from pgcompress.registry import codec_names, register_codec
from pgcompress.submission.decoder import build_decoder


def test_codec_names_follow_codec_order():
    assert codec_names()[:len(CODEC_ORDER)] == list(CODEC_ORDER)
    assert len(set(CODEC_ORDER)) == len(CODEC_ORDER)


def reversed_decode(blob, dtype, count, lo, hi):
    """The little-endian bytes of the stream, back to front."""
    if len(blob) != count * np.dtype(dtype).itemsize:
        raise CodecError(f"reversed: {len(blob)} bytes for {count} {dtype} values")
    return np.frombuffer(bytes(blob)[::-1], dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)


class ReversedCodec(Codec):
    name = "reversed"
    decode_fn = staticmethod(reversed_decode)

    def encode(self, arr, info):
        return np.ascontiguousarray(arr, dtype=np.dtype(info.dtype).newbyteorder("<")).tobytes()[::-1]


def test_a_new_codec_is_one_class_and_one_registration_line(monkeypatch, tmp_path):
    codec_names()  # the built-ins registered, then a private copy of the table for this test
    monkeypatch.setattr(registry, "_CODECS", dict(registry._CODECS))

    register_codec(ReversedCodec())

    assert codec_names()[-1] == "reversed"  # after CODEC_ORDER
    g = torch.Generator().manual_seed(0)
    sd = {"w": torch.randn(24, 16, generator=g), "b": torch.randn(16, generator=g).half()}
    data = pgcompress.pack(sd, method="int8-ref", codec="reversed", submittable=True)
    assert {s.codec for t in fmt.parse(data).tensors for s in t.streams} == {"reversed"}
    out = pgcompress.unpack(data)
    ref = pgcompress.unpack(pgcompress.pack(sd, method="int8-ref", codec="raw"))
    assert all(torch.equal(out[k], ref[k]) for k in ref)
    ns = {}
    exec(compile(build_decoder(data), "d.py", "exec"), ns)
    got = ns["decode"](data)
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    # raw and reversed blobs are the same size: the tie goes to the earlier name in the order tried
    arr = np.arange(10, dtype=np.float32)
    info = stream_info_for(arr)
    assert choose_codec(arr, info, ["raw", "reversed"])[0] == "raw"
    assert choose_codec(arr, info, ["reversed", "raw"])[0] == "reversed"
