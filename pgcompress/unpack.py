"""``unpack``: artifact bytes -> the dequantized state dict (and read-only views of the header).

The walk is ``format.decode_artifact``, the same code the submission decoder carries; here it
runs with the registry's codecs and the methods' validating ``dequantize``.
"""

from __future__ import annotations

import torch

from pgcompress import format as fmt
from pgcompress.errors import MethodError
from pgcompress.quant.base import Encoded
from pgcompress.registry import get_method


class _RegistryMethods:
    """The registry seen as the walk's method table: name -> fn(method, params, streams, shape, dtype)."""

    def get(self, name):
        try:
            method = get_method(name)
        except MethodError:
            return None
        return lambda m, params, streams, shape, dtype: method.dequantize(Encoded(m, params, streams), shape, dtype)


REGISTRY_METHODS = _RegistryMethods()


def unpack(data: bytes, source: str = "artifact") -> dict[str, torch.Tensor]:
    """Decode every stream, verify its checksum, and dequantize every tensor, in header order.

    Any problem with the bytes raises FormatError naming ``source``, the tensor and the stream."""
    return fmt.decode_artifact(data, source, fmt.REGISTRY_CODECS, REGISTRY_METHODS)


def decode_tensor(data: bytes, rec: fmt.TensorRecord, source: str = "artifact") -> torch.Tensor:
    """One tensor of a parsed artifact (``fmt.parse(data).tensors``)."""
    where = f"{source}: tensor {rec.name!r}"
    view = memoryview(data)
    arrays = {s.role: fmt.decode_stream_entry(view, s.entry, s.offset, fmt.REGISTRY_CODECS, where) for s in rec.streams}
    entry = {"name": rec.name, "shape": list(rec.shape), "dtype": rec.dtype, "method": rec.method, "params": rec.params}
    return fmt.dequantize_entry(entry, arrays, REGISTRY_METHODS, where)


def read_header(data: bytes, source: str = "artifact") -> dict:
    """The artifact's header as plain data (label, tensor table), without decoding any stream."""
    return fmt.parse(data, source).header
