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

The walk itself (``read_container``, ``decode_stream_entry``, ``dequantize_entry``,
``decode_artifact``) is plain functions over plain data, using only numpy, torch and the
standard library: ``unpack`` runs them with the registry's codecs and methods, and the generated
submission decoder carries a verbatim copy of them, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from pgcompress.coding.base import MAX_STREAM_BYTES, STREAM_DTYPES, StreamInfo
from pgcompress.errors import CodecError, FormatError
from pgcompress.registry import get_codec
from pgcompress.tensors import TORCH_DTYPES

MAGIC = b"PGCA"
VERSION = 1
PREAMBLE_FORMAT = "<4sHBBII"
PREAMBLE = struct.Struct(PREAMBLE_FORMAT)
HEADER_CODEC_ZLIB = 0
MAX_HEADER_JSON = 4 << 20
MAX_JSON_INT_DIGITS = 20
MAX_TENSORS = 1 << 16
MAX_STREAMS_PER_TENSOR = 4096  # a bank stored slice by slice (quant/slices.py): 16 per slice, 256 slices
MAX_NDIM = 8
MAX_NAME = 1024
MAX_TENSOR_NUMEL = 1 << 36
MAX_TOTAL_ELEMENTS = 1 << 31  # over all tensors, and over all streams (a 16 MB artifact needs < 2^28)
TENSOR_DTYPES = tuple(TORCH_DTYPES)
SYMBOL_DTYPE_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "uint16": (0, 65535)}


@dataclass(frozen=True)
class StreamRecord:
    role: str
    info: StreamInfo
    codec: str
    offset: int  # absolute offset in the artifact (derived from sizes, never stored)
    size: int
    crc: int
    entry: dict  # the header's entry, as validated


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
    header, walked, end = read_container(memoryview(data), source)
    tensors = []
    for t, streams, _ in walked:
        recs = tuple(StreamRecord(s["role"], StreamInfo(s["dtype"], s["count"], s.get("lo"), s.get("hi")),
                                  s["codec"], offset, s["size"], s["crc"], s) for s, offset in streams)
        tensors.append(TensorRecord(t["name"], tuple(t["shape"]), t["dtype"], t["method"], t["params"], recs))
    return Container(header=header, tensors=tuple(tensors), header_bytes=end, total_bytes=len(data))


class _RegistryCodecs:
    """The registry seen as the walk's codec table: name -> decode(blob, dtype, count, lo, hi)."""

    def get(self, name):
        try:
            codec = get_codec(name)
        except CodecError:
            return None
        return lambda blob, dtype, count, lo, hi: codec.decode(blob, StreamInfo(dtype, count, lo, hi))


REGISTRY_CODECS = _RegistryCodecs()


# The walk. Plain functions over plain data (numpy, torch, stdlib only): the submission decoder
# copies them verbatim, with its own FormatError. ``codecs`` and ``methods`` are name -> function
# tables (anything with ``.get``). Everything is checked before anything is allocated or decoded.

def decode_artifact(data, source, codecs, methods):
    """artifact bytes -> {name: tensor}, every check of docs/FORMAT.md applied."""
    data = memoryview(data)
    _, tensors, _ = read_container(data, source)
    state = {}
    for t, streams, where in tensors:
        arrays = {s["role"]: decode_stream_entry(data, s, offset, codecs, where) for s, offset in streams}
        state[t["name"]] = dequantize_entry(t, arrays, methods, where)
    return state


def read_container(data, source):
    """-> (header, [(tensor entry, [(stream entry, offset)], where)], header end): checks 1-4."""
    if len(data) < 16:
        raise FormatError(f"{source}: {len(data)} bytes is too short for a pgcompress artifact")
    magic, version, hcodec, reserved, hsize, hcrc = struct.unpack_from(PREAMBLE_FORMAT, data, 0)
    if magic != MAGIC:
        raise FormatError(f"{source}: not a pgcompress artifact (magic {bytes(magic)!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise FormatError(f"{source}: artifact format version {version} is not supported "
                          f"(this reader reads version {VERSION}); upgrade pgcompress")
    end = 16 + hsize
    packed = bytes(data[16:end])
    bad_file(source, hcodec != HEADER_CODEC_ZLIB or reserved, f"has header codec {hcodec}, reserved byte {reserved}")
    bad_file(source, end > len(data), f"is truncated: the header needs {end} bytes, the file has {len(data)}")
    bad_file(source, zlib.crc32(packed) != hcrc, "has a header checksum mismatch")
    header = load_header_json(packed, source)
    entries = header.get("tensors")
    bad_file(source, not isinstance(entries, list) or len(entries) > MAX_TENSORS
             or not isinstance(header.get("label", ""), str), "has no tensor table, too many tensors or a bad label")
    offset, names, totals, out = end, set(), [0, 0], []
    for i, t in enumerate(entries):
        where = check_tensor_entry(t, i, names, totals, source)
        streams, roles = [], set()
        for s in t["streams"]:
            check_stream_entry(s, roles, totals, where)
            streams.append((s, offset))
            offset += s["size"]
            bad_file(where, offset > len(data), f"is truncated: stream {s['role']!r} ends at {offset}")
        bad_file(where, max(totals) > MAX_TOTAL_ELEMENTS, f"takes the artifact over {MAX_TOTAL_ELEMENTS} elements")
        out.append((t, streams, where))
    bad_file(source, offset != len(data), f"has {len(data) - offset} bytes after the last stream")
    return header, out, end


def bad_file(where, failed, what):
    if failed:
        raise FormatError(f"{where} {what}; the artifact is corrupt or foreign")


def load_header_json(packed, source):
    """zlib-compressed header -> dict; at most MAX_HEADER_JSON bytes, finite numbers, short ints."""
    d = zlib.decompressobj()
    try:
        text = d.decompress(packed, MAX_HEADER_JSON + 1)
        bad_file(source, not d.eof or d.unused_data or len(text) > MAX_HEADER_JSON,
                 f"has a header that is cut short, followed by junk, or over {MAX_HEADER_JSON} bytes")
        header = json.loads(text.decode("utf-8"), parse_int=json_int, parse_float=json_float,
                            parse_constant=json_float)
    except (zlib.error, ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError: ValueErrors
        raise FormatError(f"{source}: the header is not zlib-compressed JSON ({type(exc).__name__}: {str(exc)[:200]})") from None
    bad_file(source, not isinstance(header, dict), "has no header object")
    return header


def json_int(text):
    if len(text) > MAX_JSON_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits")
    return int(text)


def json_float(text):
    value = float(text)  # NaN and Infinity come here too (parse_constant)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is not a finite number")
    return value


def is_json_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def check_tensor_entry(t, i, names, totals, source):
    """A header tensor entry (check 3) -> the name to report it by; adds its elements to totals[0]."""
    bad_file(f"{source}: tensor #{i}", not isinstance(t, dict) or not isinstance(t.get("name"), str)
             or t["name"] in names or len(t["name"]) > MAX_NAME, "has no unique name")
    names.add(t["name"])
    where = f"{source}: tensor {t['name']!r}"
    shape, streams, method = t.get("shape"), t.get("streams"), t.get("method")
    bad_file(where, not isinstance(shape, list) or len(shape) > MAX_NDIM
             or not all(is_json_int(n) and n >= 0 for n in shape), "has a bad shape")
    totals[0] += math.prod(shape)
    bad_file(where, math.prod(shape) > MAX_TENSOR_NUMEL, f"has more than {MAX_TENSOR_NUMEL} elements")
    bad_file(where, t.get("dtype") not in TENSOR_DTYPES or not isinstance(method, str) or len(method) > MAX_NAME
             or not isinstance(t.get("params"), dict), "has an unknown dtype, no method or no params")
    bad_file(where, not isinstance(streams, list) or len(streams) > MAX_STREAMS_PER_TENSOR, "has a bad stream list")
    return where


def check_stream_entry(s, roles, totals, where):
    """A header stream entry (check 3); adds its element count to totals[1]."""
    bad_file(where, not isinstance(s, dict) or not isinstance(s.get("role"), str) or s["role"] in roles
             or len(s["role"]) > MAX_NAME, "has a stream without a unique role")
    roles.add(s["role"])
    where = f"{where} stream {s['role']!r}"
    dtype, count, lo, hi, size, crc = (s.get(k) for k in ("dtype", "count", "lo", "hi", "size", "crc"))
    bad_file(where, dtype not in STREAM_DTYPES or not is_json_int(count) or count < 0
             or count * np.dtype(dtype).itemsize > MAX_STREAM_BYTES, "has an unknown dtype or a bad element count")
    totals[1] += count
    lo_min, hi_max = SYMBOL_DTYPE_RANGES.get(dtype, (1, 0))  # lo/hi only on <= 16-bit integer streams
    bad_file(where, (lo is not None or hi is not None)
             and not (is_json_int(lo) and is_json_int(hi) and lo_min <= lo <= hi <= hi_max),
             f"has a value range {str(lo)[:30]}..{str(hi)[:30]} that {dtype} cannot hold")
    bad_file(where, not (is_json_int(size) and size >= 0 and is_json_int(crc) and 0 <= crc < 2 ** 32
                         and isinstance(s.get("codec"), str)), "has a bad size, checksum or codec")


def decode_stream_entry(data, s, offset, codecs, where):
    """One stream: CRC, the codec's own checks, then count, dtype and range (check 5)."""
    where = f"{where} stream {s['role']!r}"
    blob = bytes(data[offset:offset + s["size"]])
    if zlib.crc32(blob) != s["crc"]:
        raise FormatError(f"{where}: checksum mismatch (corrupt file)")
    fn = codecs.get(s["codec"])
    if fn is None:
        raise FormatError(f"{where}: unknown codec {s['codec'][:80]!r}; upgrade pgcompress")
    lo, hi = s.get("lo"), s.get("hi")
    try:
        arr = fn(blob, s["dtype"], s["count"], lo, hi)
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None
    except Exception as exc:  # a codec bug must still read as a bad file, not crash the caller
        raise FormatError(f"{where}: codec {s['codec']} failed unexpectedly ({type(exc).__name__}: {exc})") from None
    bad_file(where, not isinstance(arr, np.ndarray) or arr.dtype != np.dtype(s["dtype"]) or arr.size != s["count"]
             or lo is not None and arr.size and (int(arr.min()) < lo or int(arr.max()) > hi),
             "does not decode to its count, dtype and value range")
    return arr


def dequantize_entry(t, arrays, methods, where):
    """A tensor's decoded streams -> its tensor, through its method (check 6)."""
    fn = methods.get(t["method"])
    if fn is None:
        raise FormatError(f"{where} uses method {t['method'][:80]!r}, which this reader does not know; upgrade pgcompress")
    shape = tuple(t["shape"])
    try:
        out = fn(t["method"], t["params"], arrays, shape, getattr(torch, t["dtype"]))
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None
    except Exception as exc:  # the method's params or streams do not fit: a bad file
        raise FormatError(f"{where}: bad {t['method']} data ({type(exc).__name__}: {str(exc)[:200]})") from None
    bad_file(where, not isinstance(out, torch.Tensor) or tuple(out.shape) != shape, f"does not decode to shape {shape}")
    return out.contiguous()
