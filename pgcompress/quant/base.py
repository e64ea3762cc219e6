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
    # (tensor name, method name without +lqer) -> (codes, qparams, extra): lets a solver that tries
    # int6-gptq and int6-gptq+lqer on one tensor run GPTQ once. None: no reuse.
    memo: dict | None = None
    device: str = "cpu"  # where GPTQ runs (results come back to the CPU)
    # key (tensor name, or ``name[i]`` for a bank slice) -> output sensitivity a [out] (mean squared
    # gradient at each output of the linear map), for methods that weigh rows by it (``wf*-kfac``)
    out_sens: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class TensorKind:
    """What a method needs to know to offer itself as a solver candidate for a tensor: its shape and
    dtype (roles come from these, never from names) and whether calibration gave it a Hessian."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    has_hessian: bool = False
    has_sensitivity: bool = False  # calibration also gave its outputs' sensitivities (a backward pass)

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n

    @property
    def is_float(self) -> bool:
        return self.dtype.is_floating_point

    @property
    def is_matrix(self) -> bool:
        """Worth an integer grid: a float tensor with a real [rows, cols] view (>= 2 columns, rows
        of at least 2 and 4,096 elements in all); smaller ones cost more in scales than they save."""
        if not self.is_float or not self.shape:
            return False
        cols = int(self.shape[-1])
        return cols >= 2 and self.numel // max(cols, 1) >= 2 and self.numel >= 4096


class Method:
    """A quantization method. Callers ask it what it is through these attributes, never by parsing
    its name: a new method sets the ones that apply and registers one name pattern
    (``registry.register_method``)."""

    name: str = ""
    needs_hessians: bool = False  # True: quantize() raises without a Hessian for the tensor
    wants_hessians: bool = False  # True: uses a Hessian when there is one (needs_hessians implies it)
    needs_sensitivity: bool = False  # True: quantize() raises without output sensitivities (QuantContext.out_sens)
    # The plain function (method, params, streams, shape, dtype) -> tensor that dequantize runs after
    # validating; torch/numpy only, so the submission decoder copies it. None: not submittable.
    decode_fn = None
    # The shared integer grid (``grid.Grid``: bits, symmetric, group size, scale dtype) its codes are
    # stored on, in the intN stored form (``intn.grid_dequantize``; unpack can then expand bit-packed
    # codes on a device). None: another stored form.
    grid = None
    # Rank of the LQER correction it adds: 0 none, though the family has a ``+lqer`` variant
    # (``quantize.lqer_targets`` may offer one); None: the family takes no correction.
    lqer_rank: int | None = None
    # (rows [R, L], a weight's grid view) -> (grid.QParams, params recorded): the qparams it derives
    # from the weight alone, which QAT's fake-quant reproduces. None: its codes need more (a Hessian).
    row_qparams = None
    # row_qparams is each row's absmax (QAT's Triton kernel then computes the scales itself)
    absmax_rows: bool = False

    def inner_methods(self, params: dict) -> list[str]:
        """Other methods a stored tensor of this method decodes through (a decoder must carry them)."""
        return []

    def quantize(self, name: str, w: torch.Tensor, ctx: QuantContext) -> Encoded:
        raise NotImplementedError

    def dequantize(self, enc: Encoded, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        raise NotImplementedError
