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
from pgcompress.coding.choose import auto_codecs, choose_codec
from pgcompress.errors import CodecError
from pgcompress.registry import codec_names, get_codec, register_codec
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


def test_auto_choice_tries_byte_compressors_only_where_they_can_win(monkeypatch):
    """Large symbol streams: symbol coders (and any codec that is not a byte compressor) only;
    small ones and float streams: every codec."""
    codec_names()
    monkeypatch.setattr(registry, "_CODECS", dict(registry._CODECS))
    register_codec(ReversedCodec())
    rng = np.random.default_rng(0)
    big = rng.integers(-7, 8, size=(256, 512)).astype(np.int8)  # 128 KB of codes
    names = auto_codecs(stream_info_for(big))
    assert names and not any(get_codec(n).bytes_only for n in names)
    assert {"rans-ctx2", "rans", "bitpack", "reversed"} <= set(names)
    small = big[:64]
    assert auto_codecs(stream_info_for(small)) == codec_names()
    floats = rng.standard_normal((256, 512)).astype(np.float16)
    assert auto_codecs(stream_info_for(floats)) == codec_names()
    # the choice among them is still the smallest blob
    name, blob = choose_codec(big.reshape(-1), stream_info_for(big))
    assert len(blob) == min(len(get_codec(n).encode(big.reshape(-1), stream_info_for(big))) for n in names)
    assert name in names
