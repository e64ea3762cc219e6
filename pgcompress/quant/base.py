"""The method interface: a quantization method turns one tensor into streams + plain metadata.

``quantize`` returns an ``Encoded`` (method name, JSON-able params, named numpy streams);
``dequantize`` rebuilds the tensor from exactly that. The artifact stores the method name and
params in its header and each stream through a codec, so ``unpack`` calls ``dequantize`` with
what ``quantize`` returned, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class Encoded:
    """One tensor in stored form.

    method: registered method name that can dequantize it (may differ from the one asked for,
      e.g. ``int8-ref`` stores small tensors with ``fp16``).
    params: plain data only (str, int, float, bool, lists, dicts) - it goes into the JSON header.
    streams: role -> numpy array; stored flat, little-endian, in this order.
    """

    method: str
    params: dict[str, Any]
    streams: dict[str, np.ndarray]


@dataclass
class QuantContext:
    """What a method may use beyond the tensor itself.

    hessians: tensor name -> H [in, in] fp32 (sum of x x^T over calibration tokens), for GPTQ-like
      methods; absent names mean "no calibration for this tensor".
    """

    hessians: dict[str, torch.Tensor] = field(default_factory=dict)


class Method:
    name: str = ""
    # The plain function (method, params, streams, shape, dtype) -> tensor that dequantize runs after
    # validating; torch/numpy only, so the submission decoder copies it. None: not submittable.
    decode_fn = None

    def quantize(self, name: str, w: torch.Tensor, ctx: QuantContext) -> Encoded:
        raise NotImplementedError

    def dequantize(self, enc: Encoded, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        raise NotImplementedError
