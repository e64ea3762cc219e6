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


class _DeviceMethods(_RegistryMethods):
    """As the registry, but tensors of methods stored on the shared integer grid (``method.grid``),
    without an LQER correction, are dequantized on ``device``: their codes travel bit-packed (b bits
    a code, ``kernels.packing``) and ``kernels.dequant_packed`` expands them there (Triton on CUDA,
    its torch reference elsewhere; bit-exact with the grid either way). Everything else is
    dequantized as usual and moved."""

    def __init__(self, device: torch.device):
        self.device = device

    def get(self, name):
        fn = super().get(name)
        if fn is None:
            return None
        on_grid = get_method(name).grid is not None

        def on_device(m, params, streams, shape, dtype):
            if on_grid and "lqer_rank" not in params:  # the stored params, not the name, say if LQER is there
                return _grid_on_device(m, params, streams, tuple(shape), dtype, self.device)
            return fn(m, params, streams, shape, dtype).to(self.device)
        return on_device


def _grid_on_device(method, params, streams, shape, dtype, device):
    import numpy as np

    from pgcompress.kernels.dequant import dequant_packed
    from pgcompress.kernels.packing import pack_codes
    from pgcompress.quant.grid import matrix_dims
    from pgcompress.quant.intn import grid_check

    out, cols = matrix_dims(shape)
    grid_check(method, params, streams, out, cols)  # the same checks as the CPU path, before any allocation
    codes = torch.from_numpy(np.ascontiguousarray(streams["q"]).reshape(out, cols).copy())
    raw = np.ascontiguousarray(streams["scale"])
    if params["scale_dtype"] == "bf16":
        scale = torch.from_numpy(raw.view(np.int16).copy()).view(torch.bfloat16)
    else:
        scale = torch.from_numpy(raw.copy())
    zero = torch.from_numpy(np.ascontiguousarray(streams["zero"]).copy()) if "zero" in streams else None
    bits = params["bits"]
    packed = pack_codes(codes, bits).to(device)
    scale = scale.to(device)
    zero = None if zero is None else zero.to(device)
    w = dequant_packed(packed, bits, cols, scale, zero, params["group"], out_dtype=torch.float32)
    return w.to(dtype).reshape(shape)


class _Ticking:
    """A method table that advances a progress bar once per tensor dequantized (the walk decodes a
    tensor's streams just before), so the container walk itself needs no progress hook."""

    def __init__(self, methods, bar):
        self.methods, self.bar = methods, bar

    def get(self, name):
        fn = self.methods.get(name)
        if fn is None:
            return None

        def ticking(*args):
            out = fn(*args)
            self.bar.update(1)
            return out
        return ticking


def unpack(data: bytes, source: str = "artifact", device: str | torch.device | None = None,
           progress: bool = False) -> dict[str, torch.Tensor]:
    """Decode every stream, verify its checksum, and dequantize every tensor, in header order.

    device: where the tensors are made (None: the CPU, with the methods' own dequantize; given:
    integer-grid tensors are dequantized there from bit-packed codes, identical values).
    progress: a bar on stderr, one tick per tensor (shown at a terminal only).
    Any problem with the bytes raises FormatError naming ``source``, the tensor and the stream."""
    methods = REGISTRY_METHODS if device is None else _DeviceMethods(torch.device(device))
    if not progress:
        return fmt.decode_artifact(data, source, fmt.REGISTRY_CODECS, methods)
    from pgcompress.progress import progress_counter

    total = len(fmt.parse(data, source).tensors)
    with progress_counter("unpack", total, "tensors", enabled=True) as bar:
        return fmt.decode_artifact(data, source, fmt.REGISTRY_CODECS, _Ticking(methods, bar))


def read_header(data: bytes, source: str = "artifact") -> dict:
    """The artifact's header as plain data (label, tensor table), without decoding any stream."""
    return fmt.parse(data, source).header
