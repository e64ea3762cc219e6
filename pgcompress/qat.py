"""Quantization-aware training: fake-quant with a straight-through estimator, on the same grid and
with the same qparams rules as ``pgc pack``, so a QAT-trained checkpoint packs with zero extra error.

    from pgcompress.qat import prepare_qat
    prepare_qat(model, "int6-sdclip,tok_emb.weight=int8-ref")   # same spec as pgc pack --method

``prepare_qat`` swaps every ``nn.Linear`` (subclasses such as CastedLinear included) for a
subclass whose forward uses ``fake_quant(weight)``; with ``embeddings=True`` it also swaps every
``nn.Embedding`` for one whose ``.weight`` reads as ``fake_quant(weight)``, so the lookup and a
tied output head (``F.linear(x, tok_emb.weight)``) both train against the unpacked embedding.
Parameters, names and the state dict stay exactly as they were, so
``torch.save(model.state_dict())`` packs directly. Which linear gets which
method follows pack's own plan (``pgcompress.quant.policy``): small tensors that pack keeps as
floats stay unquantized here too. The forward's weight is bit-identical to what ``unpack`` returns
for that method (tests/test_qat.py), eager or under ``torch.compile``: the qparams (clip choice,
stored-dtype scale rounding) run eagerly outside the compiled graph, and the graph only does the
elementwise round/clamp/multiply, which compiles to the same IEEE operations.

On CUDA (with triton installed) the quantize -> dequantize runs as one Triton kernel
(``pgcompress.kernels.fake_quant``; for ``-rtn`` it computes the absmax scales too), int8-ref's
quantile clip is computed on the weight's device (no copy to the CPU), and the result is the same
bits as the torch path (tests/test_kernels_fake_quant.py). The kernel is a graph break under
``torch.compile``.

Supported: ``int{N}-{rtn,clip,sdclip,pct}`` with their grid modifiers, ``int8-ref``, and the
keep-float methods. GPTQ and ``+lqer`` are post-training methods (they need a Hessian or an SVD of
the final error): train with the matching RTN grid (e.g. ``int6-sdclip``) instead.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from pgcompress.errors import MethodError
from pgcompress.quant import grid as G
from pgcompress.quant.base import Method
from pgcompress.quant.policy import MethodSpec, method_for
from pgcompress.registry import get_method

_FLOAT_CASTS = {"fp16": torch.float16, "bf16": torch.bfloat16}


@torch.compiler.disable
@torch.no_grad()
def qparams(w: torch.Tensor, method: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Eager qparams of weight w for an RTN-family method, broadcastable over w's grid view:
    (scale [R, 1] fp32, zero [R, 1] int32 or None)."""
    m = _grid_method(method)
    rows = G.to_rows(G.as_matrix(w.detach().float()), m.grid.group_size)
    qp, _ = m.row_qparams(rows)
    return qp.scale[:, None], None if qp.zero is None else qp.zero[:, None]


class _FakeQuant(torch.autograd.Function):
    """forward: the packed-then-unpacked weight; backward: identity (straight-through)."""

    @staticmethod
    def forward(ctx, w, scale, zero, qmin, qmax, group):
        W = G.as_matrix(w.float())
        rows = G.to_rows(W, group)
        q = torch.clamp(torch.round(rows / scale) + (0 if zero is None else zero), qmin, qmax)
        q = q.to(torch.int32)  # exact; also turns -0.0 into code 0 as the stored int8 does
        if zero is not None:
            q = q - zero
        return (q.float() * scale).reshape(w.shape).to(w.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None, None, None, None


def fake_quant(w: torch.Tensor, method: str) -> torch.Tensor:
    """w (any float tensor) -> what ``unpack`` returns for it under ``method``, with an STE gradient."""
    if method in ("raw", "fp32"):
        return w if method == "raw" or w.dtype == torch.float32 else w.float()
    if method in _FLOAT_CASTS:
        return _Cast.apply(w, _FLOAT_CASTS[method])
    if method == "int8-ref":
        return _Int8Ref.apply(w)
    grid = _grid_method(method).grid
    if _on_kernel(w):
        return _KernelFakeQuant.apply(w, method)
    scale, zero = qparams(w, method)
    return _FakeQuant.apply(w, scale, zero, grid.qmin, grid.qmax, grid.group_size)


_torch_only = False


@contextlib.contextmanager
def torch_fake_quant():
    """Inside the block, ``fake_quant`` takes the pure-torch path even for CUDA tensors with triton
    installed (the path it takes on CPU; same values): bench/kernels.py times the Triton kernel
    against it."""
    global _torch_only
    saved, _torch_only = _torch_only, True
    try:
        yield
    finally:
        _torch_only = saved


def _on_kernel(w: torch.Tensor) -> bool:
    if _torch_only or not w.is_cuda:
        return False
    from pgcompress.kernels._backend import triton_available

    return triton_available()


class _KernelFakeQuant(torch.autograd.Function):
    """The Triton path of ``_FakeQuant`` (same values); backward: identity."""

    @staticmethod
    @torch.compiler.disable
    def forward(ctx, w, method):
        from pgcompress.kernels.fake_quant import absmax_fake_quant_rows, fake_quant_rows

        m = _grid_method(method)
        rows = G.to_rows(G.as_matrix(w.detach()), m.grid.group_size)
        if m.absmax_rows:
            out = absmax_fake_quant_rows(rows, m.grid, backend="triton")[0]
        else:
            scale, zero = qparams(w, method)
            out = fake_quant_rows(rows, scale[:, 0], None if zero is None else zero[:, 0], m.grid.qmin,
                                  m.grid.qmax, backend="triton")
        return out.reshape(w.shape)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _Cast(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, dtype):
        return w.to(dtype).to(w.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _Int8Ref(torch.autograd.Function):
    @staticmethod
    @torch.compiler.disable
    def forward(ctx, w):
        # on w's own device: the quantile is torch.quantile's sort + lerp there, no CPU copy
        from pgcompress.quant.int8_ref import CLIP_Q, quantile_linear, quantize_rows, quantize_tensor

        w = w.detach()
        if w.ndim == 2 and w.numel() and _on_kernel(w):
            from pgcompress.kernels.fake_quant import fake_quant_rows

            clip = quantile_linear(w.float().abs(), CLIP_Q)
            scale = (clip / 127.0).clamp_min(1.0 / 127.0)
            return fake_quant_rows(w, scale, None, -127, 127, clip=clip, dq_scale=scale.half().float(),
                                   backend="triton")
        if w.ndim == 2:
            q, s = quantize_rows(w)
            out = q.float() * s.float()[:, None]
        else:
            q, s = quantize_tensor(w)
            out = q.float() * s
        return out.to(w.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


def _grid_method(method: str) -> Method:
    """The method, if QAT can reproduce it on the grid: its qparams come from the weight alone
    (``row_qparams``) and no correction is fitted to the final error."""
    try:
        m = get_method(method)
    except MethodError:
        m = None
    if m is not None and m.grid is not None and m.row_qparams is not None and not m.lqer_rank:
        return m
    if m is not None and m.wants_hessians:
        raise MethodError(f"QAT cannot reproduce {method!r} (a post-training method: it needs a Hessian or "
                          "the final error); train with the matching RTN grid, e.g. int6-sdclip or int6-clip")
    raise MethodError(f"QAT supports int{{N}}-rtn/clip/sdclip/pct (+ grid modifiers), int8-ref, fp16, bf16, "
                      f"fp32 and raw; not {method!r}")


class QATLinear:
    """Mixin for the swapped classes: forward = F.linear with the fake-quantized weight, cast to the
    activation dtype (as CastedLinear does; a no-op for a plain nn.Linear)."""

    qat_method: str

    def qat_weight(self) -> torch.Tensor:
        return fake_quant(self.weight, self.qat_method)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.qat_weight().to(x.dtype), bias)


class QATEmbedding:
    """Mixin for swapped embeddings: reading ``.weight`` gives the fake-quantized weight (the
    parameter itself stays in ``_parameters``, so the state dict and the optimizer see it), so the
    lookup and a tied head both use what ``unpack`` will return. Write to the parameter through
    ``_parameters["weight"]`` (or strip_qat first): ``.weight`` is a computed tensor here."""

    qat_method: str

    def qat_weight(self) -> torch.Tensor:
        return fake_quant(self._parameters["weight"], self.qat_method)

    def __getattr__(self, name: str):
        if name == "weight":
            return self.qat_weight()
        return super().__getattr__(name)


_SWAPPED: dict[type, type] = {}


def _qat_class(cls: type) -> type:
    if cls not in _SWAPPED:
        mixin = QATEmbedding if issubclass(cls, nn.Embedding) else QATLinear
        _SWAPPED[cls] = type(f"QAT{cls.__name__}", (mixin, cls), {})
    return _SWAPPED[cls]


def prepare_qat(model: nn.Module, method: str | MethodSpec = "int6-rtn", embeddings: bool = False) -> dict[str, str]:
    """Swap model's linear layers (and, with ``embeddings``, its embeddings) for fake-quant
    versions in place; returns {weight name: method} for the swapped ones. ``method`` is a pack
    method spec (default + GLOB=NAME overrides).

    ``embeddings=True`` is opt-in because afterwards ``emb.weight`` is a computed tensor, not the
    parameter: an optimizer group built as ``[model.tok_emb.weight]`` (the reference's split) must
    be built before this call, or from ``named_parameters()``."""
    spec = method if isinstance(method, MethodSpec) else MethodSpec.parse(method)
    kinds = (nn.Linear, nn.Embedding) if embeddings else (nn.Linear,)
    plan = {}
    for mod_name, mod in model.named_modules():
        if not isinstance(mod, kinds) or isinstance(mod, (QATLinear, QATEmbedding)):
            continue
        key = f"{mod_name}.weight" if mod_name else "weight"
        weight = mod._parameters["weight"]
        chosen = method_for(key, weight, spec)
        if chosen in ("raw", "fp32") and weight.dtype == torch.float32:
            continue  # pack keeps it exactly
        fake_quant(weight.detach(), chosen)  # fail now, naming the method, not mid-training
        mod.__class__ = _qat_class(type(mod))
        mod.qat_method = chosen
        plan[key] = chosen
    return plan


def strip_qat(model: nn.Module) -> nn.Module:
    """Undo prepare_qat (the weights are left as trained)."""
    for mod in model.modules():
        if isinstance(mod, (QATLinear, QATEmbedding)):
            mod.__class__ = type(mod).__mro__[2]
            del mod.qat_method
    return model
