"""``bitpack``: exactly ceil(log2(range)) bits per symbol, checked against a pure-Python packer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgcompress.coding.base import StreamInfo, stream_info_for
from pgcompress.errors import CodecError
from pgcompress.registry import get_codec

BITPACK = get_codec("bitpack")


def python_pack(values, lo, bits):
    """Reference: little-endian bit order, value - lo in ``bits`` bits, via one big Python int."""
    acc = 0
    for i, v in enumerate(values):
        acc |= (v - lo) << (i * bits)
    nbytes = (len(values) * bits + 7) // 8
    return bytes([bits]) + acc.to_bytes(nbytes, "little")


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(-128, 127), min_size=1, max_size=500))
def test_matches_python_reference_and_roundtrips(values):
    arr = np.array(values, dtype=np.int8)
    info = stream_info_for(arr)
    blob = BITPACK.encode(arr, info)
    assert blob == python_pack(values, info.lo, (info.hi - info.lo).bit_length())
    np.testing.assert_array_equal(BITPACK.decode(blob, info), arr)


def test_five_bit_codes_take_five_bits():
    arr = np.random.default_rng(0).integers(-15, 17, 8000).astype(np.int8)  # 32 values
    info = stream_info_for(arr)
    assert (info.hi - info.lo + 1) == 32
    assert len(BITPACK.encode(arr, info)) == 1 + 8000 * 5 // 8


def test_constant_and_wide_streams():
    arr = np.full(100, 3, dtype=np.int8)
    info = stream_info_for(arr)
    assert len(BITPACK.encode(arr, info)) == 1
    np.testing.assert_array_equal(BITPACK.decode(BITPACK.encode(arr, info), info), arr)
    wide = np.random.default_rng(1).integers(-32768, 32768, 3_000_000).astype(np.int16)
    info = stream_info_for(wide)
    np.testing.assert_array_equal(BITPACK.decode(BITPACK.encode(wide, info), info), wide)


def test_corrupt_streams_raise():
    arr = np.arange(-8, 8, dtype=np.int8)
    info = stream_info_for(arr)
    blob = BITPACK.encode(arr, info)
    for bad in (b"", blob[:-1], blob + b"\0", bytes([3]) + blob[1:]):
        with pytest.raises(CodecError):
            BITPACK.decode(bad, info)
    # a value above hi (range 0..4 in 3 bits, stored 7) is caught
    info5 = StreamInfo("int8", 1, 0, 4)
    with pytest.raises(CodecError):
        BITPACK.decode(bytes([3, 7]), info5)
