"""The artifact container: a fixed preamble, a zlib-compressed JSON header, then the streams.

Layout (all integers little-endian; see docs/FORMAT.md):

    0   4  magic b"PGCA"
    4   2  format version (1)
    6   1  header codec (0 = zlib)
    7   1  reserved, 0
    8   4  header size H (compressed bytes)
    12  4  CRC-32 of the compressed header
    16  H  header: JSON, UTF-8, sorted keys, compact separators
    16+H   stream blobs, back to back, in header order; nothing after the last one

The header lists tensors (name, shape, dtype, method, params) and for each its streams (role,
element dtype, count, value range, codec, compressed size, CRC-32). Offsets are not stored:
stream i starts where stream i-1 ended, so they cannot disagree with the sizes. Nothing here is
ever unpickled or executed; every size is checked against the bytes actually present before
anything is allocated. The container knows codecs and methods only by their registered names.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from pgcompress.coding.base import MAX_STREAM_BYTES, STREAM_DTYPES, StreamInfo
from pgcompress.errors import CodecError, FormatError
from pgcompress.registry import get_codec
from pgcompress.tensors import TORCH_DTYPES

MAGIC = b"PGCA"
VERSION = 1
PREAMBLE = struct.Struct("<4sHBBII")
HEADER_CODEC_ZLIB = 0
MAX_HEADER_JSON = 64 << 20
MAX_TENSOR_NUMEL = 1 << 36


@dataclass(frozen=True)
class StreamRecord:
    role: str
    info: StreamInfo
    codec: str
    offset: int  # absolute offset in the artifact (derived from sizes, never stored)
    size: int
    crc: int


@dataclass(frozen=True)
class TensorRecord:
    name: str
    shape: tuple[int, ...]
    dtype: str
    method: str
    params: dict
    streams: tuple[StreamRecord, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def stored_bytes(self) -> int:
        return sum(s.size for s in self.streams)


@dataclass(frozen=True)
class Container:
    header: dict
    tensors: tuple[TensorRecord, ...]
    header_bytes: int  # preamble + compressed header
    total_bytes: int


def is_artifact(data: bytes) -> bool:
    return len(data) >= 4 and bytes(data[:4]) == MAGIC


def build(meta: dict, tensors: list[dict], blobs: list[bytes]) -> bytes:
    """Assemble an artifact. ``tensors`` are header entries whose streams already carry codec,
    size and crc; ``blobs`` are the encoded streams in the same order."""
    header = dict(meta)
    header["tensors"] = tensors
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False)
    packed = zlib.compress(text.encode("utf-8"), 9)
    preamble = PREAMBLE.pack(MAGIC, VERSION, HEADER_CODEC_ZLIB, 0, len(packed), zlib.crc32(packed))
    return b"".join([preamble, packed, *blobs])


def stream_entry(role: str, info: StreamInfo, codec: str, blob: bytes) -> dict:
    entry = {"role": role, "dtype": info.dtype, "count": info.count, "codec": codec,
             "size": len(blob), "crc": zlib.crc32(blob)}
    if info.lo is not None:
        entry["lo"], entry["hi"] = info.lo, info.hi
    return entry


def parse(data: bytes, source: str = "artifact") -> Container:
    """Validate the preamble and header of ``data`` and return its tensor table."""
    data = memoryview(data)
    if len(data) < PREAMBLE.size:
        raise FormatError(f"{source}: {len(data)} bytes is too short for a pgcompress artifact")
    magic, version, hcodec, _, hsize, hcrc = PREAMBLE.unpack_from(data, 0)
    if magic != MAGIC:
        raise FormatError(f"{source}: not a pgcompress artifact (magic {bytes(magic)!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise FormatError(f"{source}: artifact format version {version} is not supported "
                          f"(this pgcompress reads version {VERSION}); upgrade pgcompress")
    if hcodec != HEADER_CODEC_ZLIB:
        raise FormatError(f"{source}: unknown header codec {hcodec}")
    end = PREAMBLE.size + hsize
    if end > len(data):
        raise FormatError(f"{source}: truncated: header needs {end} bytes, file has {len(data)}")
    packed = bytes(data[PREAMBLE.size:end])
    if zlib.crc32(packed) != hcrc:
        raise FormatError(f"{source}: header checksum mismatch: the file is corrupt")
    header = _load_header_json(packed, source)
    tensors = _tensor_records(header, end, len(data), source)
    return Container(header=header, tensors=tensors, header_bytes=end, total_bytes=len(data))


def decode_stream(data: bytes, rec: StreamRecord, tensor: str, source: str = "artifact") -> np.ndarray:
    blob = bytes(memoryview(data)[rec.offset:rec.offset + rec.size])
    if zlib.crc32(blob) != rec.crc:
        raise FormatError(f"{source}: tensor {tensor!r} stream {rec.role!r}: checksum mismatch (corrupt file)")
    try:
        arr = get_codec(rec.codec).decode(blob, rec.info)
    except CodecError as exc:
        raise FormatError(f"{source}: tensor {tensor!r} stream {rec.role!r}: {exc}") from None
    if arr.dtype != np.dtype(rec.info.dtype) or arr.size != rec.info.count:
        raise FormatError(f"{source}: tensor {tensor!r} stream {rec.role!r}: codec {rec.codec} "
                          f"returned {arr.size} x {arr.dtype}, header says {rec.info.count} x {rec.info.dtype}")
    if rec.info.lo is not None and arr.size and (int(arr.min()) < rec.info.lo or int(arr.max()) > rec.info.hi):
        raise FormatError(f"{source}: tensor {tensor!r} stream {rec.role!r}: values outside the header's range")
    return arr


def _load_header_json(packed: bytes, source: str) -> dict:
    d = zlib.decompressobj()
    try:
        text = d.decompress(packed, MAX_HEADER_JSON)
    except zlib.error as exc:
        raise FormatError(f"{source}: header does not decompress ({exc})") from None
    if d.unconsumed_tail or not d.eof:
        raise FormatError(f"{source}: header is incomplete or larger than {MAX_HEADER_JSON} bytes")
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{source}: header is not valid JSON ({exc})") from None
    if not isinstance(header, dict) or not isinstance(header.get("tensors"), list):
        raise FormatError(f"{source}: header has no tensor table")
    return header


def _tensor_records(header: dict, start: int, total: int, source: str) -> tuple[TensorRecord, ...]:
    records, offset, names = [], start, set()
    for i, t in enumerate(header["tensors"]):
        where = f"{source}: tensor #{i}"
        _check(isinstance(t, dict), where, "is not an object")
        name = t.get("name")
        _check(isinstance(name, str) and name not in names, where, "has a missing or repeated name")
        names.add(name)
        where = f"{source}: tensor {name!r}"
        shape = t.get("shape")
        _check(isinstance(shape, list) and all(_is_int(s) and s >= 0 for s in shape), where, "has a bad shape")
        _check(math.prod(shape) <= MAX_TENSOR_NUMEL, where, "is too large")
        _check(t.get("dtype") in TORCH_DTYPES, where, f"has unknown dtype {t.get('dtype')!r}")
        _check(isinstance(t.get("method"), str), where, "has no method")
        _check(isinstance(t.get("params"), dict), where, "has no params")
        streams = []
        for s in t.get("streams") if isinstance(t.get("streams"), list) else _fail(where, "has no streams"):
            rec = _stream_record(s, offset, where)
            offset += rec.size
            _check(offset <= total, where, f"is truncated: stream {rec.role!r} ends at {offset}, file has {total} bytes")
            streams.append(rec)
        records.append(TensorRecord(name, tuple(shape), t["dtype"], t["method"], t["params"], tuple(streams)))
    if offset != total:
        raise FormatError(f"{source}: {total - offset} bytes after the last stream; the file is corrupt")
    return tuple(records)


def _stream_record(s: dict, offset: int, where: str) -> StreamRecord:
    _check(isinstance(s, dict), where, "has a bad stream entry")
    role, dtype, count = s.get("role"), s.get("dtype"), s.get("count")
    _check(isinstance(role, str), where, "has a stream without a role")
    _check(dtype in STREAM_DTYPES, where, f"stream {role!r} has unknown dtype {dtype!r}")
    _check(_is_int(count) and 0 <= count and count * np.dtype(dtype).itemsize <= MAX_STREAM_BYTES,
           where, f"stream {role!r} has a bad element count")
    lo, hi = s.get("lo"), s.get("hi")
    _check((lo is None and hi is None) or (_is_int(lo) and _is_int(hi) and lo <= hi),
           where, f"stream {role!r} has a bad value range")
    size, crc = s.get("size"), s.get("crc")
    _check(_is_int(size) and size >= 0 and _is_int(crc) and 0 <= crc < 2**32,
           where, f"stream {role!r} has a bad size or checksum")
    _check(isinstance(s.get("codec"), str), where, f"stream {role!r} has no codec")
    return StreamRecord(role, StreamInfo(dtype, count, lo, hi), s["codec"], offset, size, crc)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check(ok: bool, where: str, what: str) -> None:
    if not ok:
        _fail(where, what)


def _fail(where: str, what: str):
    raise FormatError(f"{where} {what}; the artifact is corrupt or was not written by pgcompress")
