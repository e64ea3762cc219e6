"""Hand-built hostile artifacts, written byte by byte (no pgcompress encoder involved).

Each one once crashed, hung or bloated a reader (issue 18): an overflowing rANS frequency
table (segfault), a 0-bit bitpack stream claiming 2^30 symbols, a one-lane rANS stream claiming
2^20 steps, varints over 2^63, headers with deep nesting, 4,300-digit integers, NaN, a set
reserved byte, a value range its dtype cannot hold, and a brotli stream far larger than declared.
Used by tests/test_format_crafted.py and as seeds by tests/fuzz_harness.py.
"""

from __future__ import annotations

import json
import struct
import zlib

import brotli


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def artifact(tensors: list[dict], blobs: list[bytes], *, header_text: bytes | None = None,
             version: int = 1, reserved: int = 0) -> bytes:
    """Preamble + zlib header + blobs; sizes and CRCs of the stream entries are filled in."""
    for t in tensors:
        for s in t["streams"]:
            blob = blobs[s.pop("_blob")]
            s.setdefault("size", len(blob))
            s.setdefault("crc", zlib.crc32(blob))
    text = header_text if header_text is not None else json.dumps({"label": "crafted", "tensors": tensors}).encode()
    packed = zlib.compress(text, 9)
    return struct.pack("<4sHBBII", b"PGCA", version, 0, reserved, len(packed), zlib.crc32(packed)) + packed + b"".join(blobs)


def q_tensor(count: int, codec: str, lo: int | None, hi: int | None, dtype: str = "int8") -> dict:
    """An int8-ref per-tensor entry [count] whose one stream 'q' is blob 0."""
    s = {"role": "q", "dtype": dtype, "count": count, "codec": codec, "_blob": 0}
    if lo is not None:
        s["lo"], s["hi"] = lo, hi
    return {"name": "w", "shape": [count], "dtype": "float32", "method": "int8-ref",
            "params": {"scheme": "tensor", "scale": 1.0}, "streams": [s]}


def rans_blob(sb: int, freqs: list[int], lanes: int, states: list[int], words: bytes = b"") -> bytes:
    body = varint(sb) + varint(len(freqs)) + b"".join(varint(f) for f in freqs)
    body += varint(lanes) + varint(len(words) // 2) + b"".join(struct.pack("<I", x) for x in states)
    return body + words


def freq_overflow() -> bytes:
    """Frequencies whose int64 sum wraps to exactly 2^15: the old reader's np.repeat wrote out of bounds."""
    freqs = [1 << 62, 1 << 62, 1 << 62, (1 << 62) + (1 << 15)]
    return artifact([q_tensor(64, "rans", 0, 3)], [rans_blob(15, freqs, 1, [1 << 16])])


def bitpack_bomb() -> bytes:
    """One byte (0 bits per symbol) claiming 2^34 symbols: the old reader allocated 128 GiB."""
    return artifact([q_tensor(1 << 34, "bitpack", 0, 0)], [b"\x00"])


def bitpack_bomb_small() -> bytes:
    """The same under the artifact-wide element cap: 2^30 symbols from one byte."""
    return artifact([q_tensor(1 << 30, "bitpack", 0, 0)], [b"\x00"])


def rans_one_lane() -> bytes:
    """One lane, one symbol of frequency 2^15, 2^20 symbols: 2^20 Python-level decode steps."""
    return artifact([q_tensor(1 << 20, "rans", 0, 0)], [rans_blob(15, [1 << 15], 1, [1 << 16])])


def huge_varint() -> bytes:
    """A scale-bits varint of 2^70: OverflowError in the old reader."""
    blob = varint(1 << 70) + varint(1) + varint(1 << 15) + varint(1) + varint(0) + struct.pack("<I", 1 << 16)
    return artifact([q_tensor(8, "rans", 0, 0)], [blob])


def deep_json() -> bytes:
    return artifact([], [], header_text=b"[" * 200_000 + b"]" * 200_000)


def long_int_json() -> bytes:
    return artifact([], [], header_text=b'{"label": "x", "tensors": [], "n": ' + b"9" * 5000 + b"}")


def nan_header() -> bytes:
    text = json.dumps({"label": "x", "tensors": [{**q_tensor(4, "raw", None, None), "params":
                       {"scheme": "tensor", "scale": float("nan")}}]}).encode()
    return artifact([], [], header_text=text.replace(b'"_blob": 0', b'"size": 0, "crc": 0'))


def reserved_byte() -> bytes:
    return artifact([q_tensor(4, "raw", None, None)], [b"\x01\x02\x03\x04"], reserved=7)


def range_outside_dtype() -> bytes:
    """lo/hi of an int8 stream outside [-128, 127]."""
    return artifact([q_tensor(4, "raw", -1000, 1000)], [b"\x01\x02\x03\x04"])


def brotli_bomb() -> bytes:
    """256 MiB of zeros in a ~400-byte brotli stream, declared as 64 bytes."""
    return artifact([q_tensor(64, "brotli", None, None)], [brotli.compress(bytes(1 << 28), quality=5)])


def dict_name() -> bytes:
    """A tensor named by an object: TypeError (unhashable) in the old reader."""
    t = q_tensor(4, "raw", None, None)
    t["name"] = {"a": 1}
    return artifact([t], [b"\x01\x02\x03\x04"])


def freq_too_large() -> bytes:
    """Entries within a varint's 42 bits but above 2^sb: bounded before they are summed."""
    return artifact([q_tensor(64, "rans", 0, 1)], [rans_blob(15, [1 << 40, (1 << 15) - (1 << 40) % (1 << 15)], 1, [1 << 16])])


CRAFTED = {
    "freq_overflow": freq_overflow, "bitpack_bomb": bitpack_bomb, "bitpack_bomb_small": bitpack_bomb_small,
    "rans_one_lane": rans_one_lane, "huge_varint": huge_varint, "deep_json": deep_json,
    "long_int_json": long_int_json, "nan_header": nan_header, "reserved_byte": reserved_byte,
    "range_outside_dtype": range_outside_dtype, "brotli_bomb": brotli_bomb, "dict_name": dict_name,
    "freq_too_large": freq_too_large,
}
