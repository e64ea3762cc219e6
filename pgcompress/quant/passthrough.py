"""Methods that keep a tensor as floats: ``raw`` (exact), ``fp16``, ``fp32``, ``bf16``.

``fp16``/``bf16`` store a cast and restore the original dtype on load, as the reference does for
small fp32/bf16 tensors; ``fp32`` stores and returns float32 (the reference's rule for control
tensors, which it does not cast back).
"""

from __future__ import annotations

import numpy as np
import torch

from pgcompress.quant.base import Encoded, Method, QuantContext
from pgcompress.quant.streams import expect_stream
from pgcompress.registry import register_method
from pgcompress.tensors import dtype_name, from_numpy_bits, to_numpy_bits, torch_dtype


class Raw(Method):
    """Stores the tensor's bits unchanged, whatever its dtype (floats, ints, bools)."""

    name = "raw"

    def quantize(self, name: str, w: torch.Tensor, ctx: QuantContext) -> Encoded:
        return Encoded(self.name, {}, {"data": to_numpy_bits(w)})

    def dequantize(self, enc: Encoded, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        storage = np.uint16 if dtype == torch.bfloat16 else torch.empty(0, dtype=dtype).numpy().dtype
        data = expect_stream(enc, "data", int(np.prod(shape, dtype=np.int64)), storage)
        return from_numpy_bits(data, dtype_name(dtype), shape)


class FloatCast(Method):
    """Stores the tensor cast to ``store`` and returns it as ``out`` (None: the original dtype)."""

    def __init__(self, name: str, store: str, out: str | None):
        self.name, self.store, self.out = name, store, out

    def quantize(self, name: str, w: torch.Tensor, ctx: QuantContext) -> Encoded:
        return Encoded(self.name, {}, {"data": to_numpy_bits(w.to(torch_dtype(self.store)))})

    def dequantize(self, enc: Encoded, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        storage = np.uint16 if self.store == "bfloat16" else np.dtype(self.store)
        data = expect_stream(enc, "data", int(np.prod(shape, dtype=np.int64)), storage)
        t = from_numpy_bits(data, self.store, shape)
        return t.to(torch_dtype(self.out) if self.out else dtype)


register_method("raw", lambda m: Raw(), "keep the tensor exactly as it is (any dtype)")
register_method("fp16", lambda m: FloatCast("fp16", "float16", None),
                "store as float16, restore the original dtype on load")
register_method("bf16", lambda m: FloatCast("bf16", "bfloat16", None),
                "store as bfloat16, restore the original dtype on load")
register_method("fp32", lambda m: FloatCast("fp32", "float32", "float32"),
                "store and load as float32 (the reference's rule for control tensors)")
