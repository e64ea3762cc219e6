"""Generic byte codecs and byte planes: roundtrips, independent decoders, clean errors."""

from __future__ import annotations

import lzma
import zlib

import brotli
import numpy as np
import pytest

from pgcompress.coding.base import stream_info_for
from pgcompress.coding.choose import choose_codec
from pgcompress.errors import CodecError
from pgcompress.registry import codec_names, get_codec

GENERIC = ["raw", "zlib", "lzma", "brotli", "zstd", "planes+brotli", "planes+lzma"]


def sample_streams():
    rng = np.random.default_rng(0)
    return [
        rng.normal(size=2000).astype(np.float16),
        rng.normal(size=777).astype(np.float32),
        rng.integers(0, 65535, 300).astype(np.uint16),  # bf16 bit patterns travel as uint16
        rng.integers(-100, 100, 5000).astype(np.int8),
        np.zeros(0, np.float32),
    ]


@pytest.mark.parametrize("name", GENERIC)
def test_roundtrip_is_bit_exact(name):
    codec = get_codec(name)
    for arr in sample_streams():
        info = stream_info_for(arr)
        if not codec.accepts(info):
            continue
        out = codec.decode(codec.encode(arr, info), info)
        assert out.dtype == arr.dtype
        assert out.tobytes() == arr.tobytes()


def test_generic_blobs_are_what_the_standard_decoders_read():
    arr = sample_streams()[0]
    info = stream_info_for(arr)
    raw = arr.astype("<f2").tobytes()
    assert zlib.decompress(get_codec("zlib").encode(arr, info)) == raw
    assert lzma.decompress(get_codec("lzma").encode(arr, info)) == raw
    assert brotli.decompress(get_codec("brotli").encode(arr, info)) == raw
    planes = brotli.decompress(get_codec("planes+brotli").encode(arr, info))
    b = raw  # independent split: even bytes (low), then odd bytes (high)
    assert planes == b[0::2] + b[1::2]


def test_byte_planes_help_float_streams():
    rng = np.random.default_rng(1)
    arr = (rng.normal(size=20000) * 0.01).astype(np.float16)
    info = stream_info_for(arr)
    assert len(get_codec("planes+brotli").encode(arr, info)) < len(get_codec("brotli").encode(arr, info))


@pytest.mark.parametrize("name", [n for n in GENERIC if n != "raw"])
def test_corrupt_or_truncated_streams_raise_codec_error(name):
    codec = get_codec(name)
    arr = np.random.default_rng(2).normal(size=4000).astype(np.float32)
    info = stream_info_for(arr)
    blob = codec.encode(arr, info)
    for bad in (blob[: len(blob) // 2], blob[:1], b"garbage" * 10):
        with pytest.raises(CodecError):
            codec.decode(bad, info)


def test_raw_wrong_length_raises():
    arr = np.arange(10, dtype=np.int16)
    info = stream_info_for(arr)
    with pytest.raises(CodecError):
        get_codec("raw").decode(b"\0" * 19, info)


def test_zstd_is_not_submittable_and_never_chosen_for_submissions():
    assert not get_codec("zstd").submittable
    arr = np.tile(np.arange(50, dtype=np.int8), 400)
    info = stream_info_for(arr)
    name, _ = choose_codec(arr, info, submittable=True)
    assert get_codec(name).submittable


def test_choose_codec_picks_the_smallest_and_is_deterministic():
    for arr in sample_streams()[:4]:
        info = stream_info_for(arr)
        name, blob = choose_codec(arr, info)
        sizes = {n: len(get_codec(n).encode(arr, info)) for n in codec_names() if get_codec(n).accepts(info)}
        assert len(blob) == min(sizes.values())
        assert name == next(n for n in codec_names() if sizes.get(n) == len(blob))
        assert choose_codec(arr, info) == (name, blob)
