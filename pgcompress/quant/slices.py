"""``slices``: one tensor stored as its leading-index slices, each slice with its own method.

A record's 3-D weight bank (``qo_bank [2L, d, d]``: one linear map per slice) is one tensor in the
state dict, but its slices are different layers with different sensitivities. The budget solver
chooses a method per slice (``budget/banks.py``) and stores the bank as one ``slices`` entry, so
the artifact and the state dict it decodes to keep the bank's name and shape.

Stored form: params ``{"parts": [{"method": m, "params": p}, ...]}``, one part per slice in slice
order; streams ``"<i>.<role>"``: part i's streams, as its method stored them for a tensor of the
slice's shape (``shape[1:]``). Decoding asks each part's method (the walk's method table, so the
submission decoder needs the parts' methods too: ``inner_methods``) and stacks the slices.
"""

from __future__ import annotations

import torch

from pgcompress.errors import FormatError, MethodError
from pgcompress.quant.base import Encoded, Method, QuantContext
from pgcompress.registry import register_method
from pgcompress.unpack import REGISTRY_METHODS

NAME = "slices"
# The method table the decode function looks parts up in: the registry here; in a generated
# decoder, its own METHODS table (the decoder builder never copies this name).
METHODS = REGISTRY_METHODS


def slices_encoded(parts: list[Encoded]) -> Encoded:
    """One ``slices`` Encoded from each slice's Encoded, in slice order."""
    if any(p.method == NAME for p in parts):
        raise MethodError("a slices part cannot itself be stored as slices")
    streams = {f"{i}.{role}": arr for i, p in enumerate(parts) for role, arr in p.streams.items()}
    return Encoded(NAME, {"parts": [{"method": p.method, "params": p.params} for p in parts]}, streams)


def slice_parts(enc: Encoded) -> list[Encoded]:
    """The inverse of ``slices_encoded``: each slice's Encoded."""
    parts = [Encoded(p["method"], p["params"], {}) for p in enc.params["parts"]]
    for role, arr in enc.streams.items():
        i, sub = role.split(".", 1)
        parts[int(i)].streams[sub] = arr
    return parts


def slices_dequantize(method, params, streams, shape, dtype):
    """Each part through its own method, stacked along the first dimension; checked first. A plain
    function: the submission decoder copies it (with its own METHODS table)."""
    parts = params.get("parts") if isinstance(params, dict) and len(params) == 1 else None
    if not isinstance(parts, list) or len(shape) < 2 or len(parts) != shape[0]:
        raise FormatError(f"slices params do not hold one part per slice of a {tuple(shape)} tensor")
    sub = [{} for _ in parts]
    for role, arr in streams.items():
        i, _, rest = role.partition(".")
        if not i.isdigit() or int(i) >= len(parts) or not rest:
            raise FormatError(f"stream {role!r} belongs to no slice")
        sub[int(i)][rest] = arr
    out = []
    for i, part in enumerate(parts):
        m = part.get("method") if isinstance(part, dict) and len(part) == 2 else None
        fn = None if m == "slices" or not isinstance(m, str) else METHODS.get(m)
        if fn is None or not isinstance(part.get("params"), dict):
            raise FormatError(f"slice {i} names no method this reader can decode a slice with")
        w = fn(m, part["params"], sub[i], tuple(shape[1:]), dtype)
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != tuple(shape[1:]):
            raise FormatError(f"slice {i} does not decode to shape {tuple(shape[1:])}")
        out.append(w.to(dtype))
    return torch.stack(out)


class Slices(Method):
    """Never asked for by name (the solver builds it from per-slice choices): ``quantize`` refuses."""

    name = NAME

    @property
    def decode_fn(self):
        return slices_dequantize

    def inner_methods(self, params: dict) -> list[str]:
        parts = params.get("parts") if isinstance(params, dict) else None
        if not isinstance(parts, list):
            return []
        return sorted({p["method"] for p in parts if isinstance(p, dict) and isinstance(p.get("method"), str)})

    def quantize(self, name: str, w: torch.Tensor, ctx: QuantContext) -> Encoded:
        raise MethodError(f"tensor {name!r}: 'slices' is how the budget solver stores a bank with a method per "
                          "slice; pack without --method to let it choose, or name one method for the tensor")

    def dequantize(self, enc: Encoded, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return slices_dequantize(enc.method, enc.params, enc.streams, tuple(shape), dtype)


register_method(NAME, lambda m: Slices(), "a bank stored slice by slice, each slice with its own method "
                "(written by the budget solver)")
