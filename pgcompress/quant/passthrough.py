"""Methods that keep a tensor as floats: ``raw`` (exact), ``fp16``, ``fp32``, ``bf16``.

``fp16``/``bf16`` store a cast and restore the original dtype on load, as the reference does for
small fp32/bf16 tensors; ``fp32`` stores and returns float32 (the reference's rule for control
tensors, which it does not cast back).
"""

from __future__ import annotations

import torch

from pgcompress.quant.base import Encoded, Method, QuantContext, TensorKind
from pgcompress.quant.streams import check_stream
from pgcompress.registry import register_candidates, register_method
from pgcompress.tensors import from_numpy_bits, to_numpy_bits, torch_dtype


class Raw(Method):
    """Stores the tensor's bits unchanged, whatever its dtype (floats, ints, bools)."""

    name = "raw"

    @property
    def decode_fn(self):
        return passthrough_dequantize

    def quantize(self, name: str, w: torch.Tensor, ctx: QuantContext) -> Encoded:
        return Encoded(self.name, {}, {"data": to_numpy_bits(w)})

    def dequantize(self, enc: Encoded, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return passthrough_dequantize(self.name, enc.params, enc.streams, tuple(shape), dtype)


class FloatCast(Method):
    """Stores the tensor cast to the method's dtype; returns the original dtype (fp32: float32)."""

    def __init__(self, name: str):
        self.name = name

    @property
    def decode_fn(self):
        return passthrough_dequantize

    def quantize(self, name: str, w: torch.Tensor, ctx: QuantContext) -> Encoded:
        return Encoded(self.name, {}, {"data": to_numpy_bits(w.to(torch_dtype(STORED_AS[self.name])))})

    def dequantize(self, enc: Encoded, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return passthrough_dequantize(self.name, enc.params, enc.streams, tuple(shape), dtype)


STORED_AS = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def passthrough_dequantize(method, params, streams, shape, dtype):
    """Stored bits -> tensor in the output dtype, checked first. A plain function: the submission
    decoder copies it."""
    stored = STORED_AS.get(method, str(dtype).removeprefix("torch."))
    numel = 1
    for d in shape:
        numel *= d
    check_stream(streams, "data", numel, "uint16" if stored == "bfloat16" else stored)
    t = from_numpy_bits(streams["data"], stored, shape)
    return t.to(torch.float32) if method == "fp32" else t.to(dtype)


def passthrough_candidates(kind: TensorKind) -> list[str]:
    """Non-float tensors: kept exactly. Float ones: fp16/bf16 casts, and exact for the small ones and
    for 16-bit matrices (a bf16 table kept as it is costs what a cast costs and, unlike fp16, is exact)."""
    if not kind.is_float:
        return ["raw"]
    casts = [m for m in ("fp16", "bf16") if torch_dtype(STORED_AS[m]) != kind.dtype]
    exact = not kind.is_matrix or kind.dtype in (torch.float16, torch.bfloat16)
    return ["raw"] + casts if exact else casts


register_candidates(passthrough_candidates)
register_method("raw", lambda m: Raw(), "keep the tensor exactly as it is (any dtype)")
register_method("fp16", lambda m: FloatCast("fp16"), "store as float16, restore the original dtype on load")
register_method("bf16", lambda m: FloatCast("bf16"), "store as bfloat16, restore the original dtype on load")
register_method("fp32", lambda m: FloatCast("fp32"),
                "store and load as float32 (the reference's rule for control tensors)")
