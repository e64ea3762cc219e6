"""The container: deterministic, checksummed, bounds-checked; damaged files fail cleanly."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
import torch

import pgcompress
from conftest import reference_like_state_dict
from pgcompress import format as fmt
from pgcompress.errors import FormatError


@pytest.fixture(scope="module")
def small_artifact() -> bytes:
    return pgcompress.pack(reference_like_state_dict(seed=1, dim=256, layers=2, vocab=300), codec="zlib")


def rebuild(data: bytes, edit) -> bytes:
    """Re-pack an artifact after editing its header JSON (valid checksum, bad content)."""
    magic, ver, hc, res, hsize, _ = fmt.PREAMBLE.unpack_from(data, 0)
    header = json.loads(zlib.decompress(data[16:16 + hsize]))
    edit(header)
    packed = zlib.compress(json.dumps(header).encode())
    return fmt.PREAMBLE.pack(magic, ver, hc, res, len(packed), zlib.crc32(packed)) + packed + data[16 + hsize:]


def test_deterministic_bytes():
    sd = reference_like_state_dict(seed=5, dim=256, layers=2, vocab=300)
    assert pgcompress.pack(sd) == pgcompress.pack({k: v.clone() for k, v in sd.items()})


def test_header_lists_tensors_methods_and_streams(small_artifact):
    header = pgcompress.read_header(small_artifact)
    assert header["label"] == "int8-ref"
    names = [t["name"] for t in header["tensors"]]
    assert names == list(reference_like_state_dict(seed=1, dim=256, layers=2, vocab=300))
    fc = next(t for t in header["tensors"] if t["name"] == "blocks.0.mlp.fc.weight")
    assert fc["method"] == "int8-ref" and fc["shape"] == [512, 256] and fc["dtype"] == "float32"
    assert [s["role"] for s in fc["streams"]] == ["q", "scale"]
    total = fmt.PREAMBLE.size + struct.unpack_from("<I", small_artifact, 8)[0]
    total += sum(s["size"] for t in header["tensors"] for s in t["streams"])
    assert total == len(small_artifact)


def test_wrong_magic(small_artifact):
    with pytest.raises(FormatError, match="not a pgcompress artifact"):
        pgcompress.unpack(b"PK\x03\x04" + small_artifact[4:])


def test_future_version(small_artifact):
    bad = small_artifact[:4] + struct.pack("<H", 9) + small_artifact[6:]
    with pytest.raises(FormatError, match="version 9"):
        pgcompress.unpack(bad)


@pytest.mark.parametrize("cut", [0, 3, 15, 40, -1, -100])
def test_truncated(small_artifact, cut):
    with pytest.raises(FormatError):
        pgcompress.unpack(small_artifact[:cut] if cut else b"")


def test_trailing_garbage(small_artifact):
    with pytest.raises(FormatError, match="after the last stream"):
        pgcompress.unpack(small_artifact + b"\0")


def test_every_flipped_byte_is_caught(small_artifact):
    # flip one byte at many positions across header and streams: always a FormatError, never a wrong tensor
    step = max(1, len(small_artifact) // 300)
    for pos in range(0, len(small_artifact), step):
        bad = bytearray(small_artifact)
        bad[pos] ^= 0x5A
        with pytest.raises(FormatError):
            pgcompress.unpack(bytes(bad))


def test_huge_declared_count_is_refused_before_allocation(small_artifact):
    def edit(h):
        h["tensors"][0]["streams"][0]["count"] = 1 << 40
    with pytest.raises(FormatError, match="element count"):
        pgcompress.unpack(rebuild(small_artifact, edit))


def test_stream_count_disagreeing_with_shape(small_artifact):
    def edit(h):
        t = next(t for t in h["tensors"] if t["method"] == "int8-ref")
        t["shape"] = [t["shape"][0], t["shape"][1] + 1]
    with pytest.raises(FormatError, match="stream 'q'"):
        pgcompress.unpack(rebuild(small_artifact, edit))


def test_unknown_method_and_codec(small_artifact):
    def method(h):
        h["tensors"][0]["method"] = "int9-magic"
    def codec(h):
        h["tensors"][0]["streams"][0]["codec"] = "pkzip"
    with pytest.raises(FormatError, match="int9-magic"):
        pgcompress.unpack(rebuild(small_artifact, method))
    with pytest.raises(FormatError, match="pkzip"):
        pgcompress.unpack(rebuild(small_artifact, codec))


def test_header_that_is_not_a_table(small_artifact):
    with pytest.raises(FormatError):
        pgcompress.unpack(rebuild(small_artifact, lambda h: h.__setitem__("tensors", {"a": 1})))
    with pytest.raises(FormatError):
        pgcompress.unpack(rebuild(small_artifact, lambda h: h["tensors"][0].__setitem__("shape", [-1])))


def test_codecs_roundtrip_every_stream_kind():
    sd = reference_like_state_dict(seed=2, dim=256, layers=1, vocab=300)
    sd["ints"] = torch.arange(-5, 70000, dtype=torch.int64)
    base = pgcompress.unpack(pgcompress.pack(sd, codec="raw"))
    for codec in ("zlib", "lzma", "brotli", "zstd"):
        got = pgcompress.unpack(pgcompress.pack(sd, codec=codec))
        assert all(torch.equal(got[k], base[k]) for k in base), codec


def test_submittable_never_uses_zstd():
    sd = reference_like_state_dict(seed=2, dim=256, layers=1, vocab=300)
    header = pgcompress.read_header(pgcompress.pack(sd, submittable=True))
    assert all(s["codec"] != "zstd" for t in header["tensors"] for s in t["streams"])
