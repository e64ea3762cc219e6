"""Torch dtype names and exact tensor <-> numpy conversions for stored streams.

bfloat16 has no numpy dtype, so its bits travel as uint16; every conversion here is a
reinterpretation or an exact copy, never a rounding.
"""

from __future__ import annotations

import numpy as np
import torch

from pgcompress.errors import FormatError

TORCH_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "float64": torch.float64, "int8": torch.int8, "uint8": torch.uint8, "int16": torch.int16,
    "int32": torch.int32, "int64": torch.int64, "bool": torch.bool,
}

# torch dtype -> the numpy dtype its bits are stored as
_STORAGE_NUMPY = {"bfloat16": np.uint16}


def dtype_name(dtype: torch.dtype) -> str:
    name = str(dtype).removeprefix("torch.")
    if name not in TORCH_DTYPES:
        raise TypeError(f"dtype {dtype} is not supported")
    return name


def torch_dtype(name: str) -> torch.dtype:
    try:
        return TORCH_DTYPES[name]
    except KeyError:
        raise FormatError(f"unknown tensor dtype {name!r} in artifact header") from None


def to_numpy_bits(t: torch.Tensor) -> np.ndarray:
    """Flat numpy array holding exactly the tensor's values (bf16 as its uint16 bit pattern)."""
    t = t.detach().to("cpu").contiguous().reshape(-1)
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16).copy()
    return t.numpy().copy()


def from_numpy_bits(arr: np.ndarray, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of to_numpy_bits for a tensor of dtype ``name`` and ``shape``."""
    if name == "bfloat16":
        t = torch.from_numpy(np.ascontiguousarray(arr).view(np.int16).copy()).view(torch.bfloat16)
    else:
        t = torch.from_numpy(np.ascontiguousarray(arr).copy())
    return t.reshape(shape)
