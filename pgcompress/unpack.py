"""``unpack``: artifact bytes -> the dequantized state dict (and read-only views of the header)."""

from __future__ import annotations

import torch

from pgcompress import format as fmt
from pgcompress.errors import FormatError, MethodError
from pgcompress.quant.base import Encoded
from pgcompress.registry import get_method
from pgcompress.tensors import torch_dtype


def unpack(data: bytes, source: str = "artifact") -> dict[str, torch.Tensor]:
    """Decode every stream, verify its checksum, and dequantize every tensor, in header order."""
    container = fmt.parse(data, source)
    out: dict[str, torch.Tensor] = {}
    for rec in container.tensors:
        out[rec.name] = decode_tensor(data, rec, source)
    return out


def decode_tensor(data: bytes, rec: fmt.TensorRecord, source: str = "artifact") -> torch.Tensor:
    streams = {s.role: fmt.decode_stream(data, s, rec.name, source) for s in rec.streams}
    try:
        method = get_method(rec.method)
    except MethodError:
        raise FormatError(f"{source}: tensor {rec.name!r} uses method {rec.method!r}, which this "
                          "pgcompress does not know; upgrade pgcompress") from None
    dtype = torch_dtype(rec.dtype)
    try:
        t = method.dequantize(Encoded(rec.method, rec.params, streams), rec.shape, dtype)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise FormatError(f"{source}: tensor {rec.name!r}: bad {rec.method} parameters ({exc})") from None
    except FormatError as exc:
        raise FormatError(f"{source}: tensor {rec.name!r}: {exc}") from None
    if tuple(t.shape) != rec.shape:
        raise FormatError(f"{source}: tensor {rec.name!r} decoded to shape {tuple(t.shape)}, header says {rec.shape}")
    return t.contiguous()


def read_header(data: bytes, source: str = "artifact") -> dict:
    """The artifact's header as plain data (label, tensor table), without decoding any stream."""
    return fmt.parse(data, source).header
