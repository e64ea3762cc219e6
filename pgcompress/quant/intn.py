"""The integer-grid method families: name grammar, stored form, and the shared dequantize.

Name grammar (``pgc methods`` lists the families)::

    int{B}-{ALGO}[-g{G}][-asym][-bf16][-k{K}|-kauto][-p{P}][+lqer[-r{R}][-f{F}]]

    B      2..8 bits
    ALGO   rtn (clip = row absmax) | clip (per-row MSE clip search) | sdclip (clip = k*std(row))
           | pct (clip = p-th percentile of |row|) | gptq (full-Hessian GPTQ)
    -g{G}  one scale per G input columns, G in 32/64/128/256 (default: one scale per row)
    -asym  asymmetric grid with an integer zero point (default symmetric, zero exact)
    -bf16  bf16 scales (default fp16)
    -k{K}  SDClip's k (sdclip: default per bit width; gptq: use an SDClip grid instead of the
           Hessian-aware clip search); -kauto: sdclip picks k per tensor by least squared error
    -p{P}  pct's percentile (default 99.9)
    +lqer  add a rank-R correction of the quantization error, factors on an F-bit per-row grid
           (defaults R=4, F=4); Hessian-weighted when the tensor has a Hessian

Examples: ``int6-gptq``, ``int5-gptq+lqer-r8``, ``int4-rtn-g64``, ``int4-clip-g128-asym``,
``int8-sdclip-k20``, ``int6-gptq-k12.85``.

Stored form (every family decodes the same way, from its params alone): params
``{"bits", "sym", "group", "scale_dtype"}`` (+ ``"lqer_rank", "lqer_bits"``); streams ``q``
(int8 codes, row-major [out, in]), ``scale`` (fp16, or bf16 as uint16 bits; [out * groups]),
``zero`` (int8, asymmetric only), and for LQER ``lqer_a``/``lqer_a_scale`` ([R, out]) and
``lqer_b``/``lqer_b_scale`` ([R, in]). Dequantization: ``grid.dequantize`` (+ ``A^T @ B``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
import torch

from pgcompress.errors import FormatError, MethodError
from pgcompress.quant import grid as G
from pgcompress.quant import lqer
from pgcompress.quant.base import Encoded, Method, QuantContext
from pgcompress.quant.grid import dequantize, matrix_dims
from pgcompress.quant.lqer import lqer_check, lqer_correction
from pgcompress.quant.streams import check_stream
from pgcompress.registry import register_method

ALGOS = ("rtn", "clip", "sdclip", "pct", "gptq")
DEFAULT_PCT = 99.9


@dataclass(frozen=True)
class MethodName:
    bits: int
    algo: str
    group: int = 0
    symmetric: bool = True
    scale_dtype: str = "fp16"
    k: float | None = None  # SDClip k (None: the bit width's default for sdclip, Hessian search for gptq)
    k_auto: bool = False
    pct: float = DEFAULT_PCT
    lqer_rank: int = 0  # 0: no LQER
    lqer_bits: int = 4

    @property
    def grid(self) -> G.Grid:
        return G.Grid(self.bits, self.symmetric, self.group, self.scale_dtype)


def family_pattern(algo: str) -> str:
    return rf"int([2-8])-{algo}([-+].*)?"


def parse_name(name: str) -> MethodName:
    """``int6-gptq-g64+lqer-r8`` -> MethodName; MethodError on anything it does not know."""
    m = re.fullmatch(r"int([2-8])-([a-z]+)((?:-[a-z0-9.]+)*)(\+lqer((?:-[a-z0-9]+)*))?", name)
    if not m or m.group(2) not in ALGOS:
        raise MethodError(f"bad method name {name!r}; grammar: "
                          "int{2..8}-{rtn|clip|sdclip|pct|gptq}[-gG][-asym][-bf16][-kK|-kauto][-pP][+lqer[-rR][-fF]]")
    spec = MethodName(int(m.group(1)), m.group(2))
    for tok in filter(None, m.group(3).split("-")):
        spec = _modifier(name, spec, tok)
    if m.group(4):
        spec = replace(spec, lqer_rank=4)
        for tok in filter(None, m.group(5).split("-")):
            if re.fullmatch(r"r\d+", tok) and 1 <= int(tok[1:]) <= 64:
                spec = replace(spec, lqer_rank=int(tok[1:]))
            elif re.fullmatch(r"f[2-8]", tok):
                spec = replace(spec, lqer_bits=int(tok[1:]))
            else:
                raise MethodError(f"method {name!r}: unknown LQER option {tok!r} (use -r1..-r64, -f2..-f8)")
    spec.grid  # validates group size etc.
    return spec


def _modifier(name: str, spec: MethodName, tok: str) -> MethodName:
    if re.fullmatch(r"g\d+", tok):
        if int(tok[1:]) not in G.GROUP_SIZES:
            raise MethodError(f"method {name!r}: group size must be one of {G.GROUP_SIZES}")
        return replace(spec, group=int(tok[1:]))
    if tok == "asym":
        return replace(spec, symmetric=False)
    if tok == "bf16":
        return replace(spec, scale_dtype="bf16")
    if tok == "kauto" and spec.algo == "sdclip":
        return replace(spec, k_auto=True)
    if re.fullmatch(r"k\d+(\.\d+)?", tok) and spec.algo in ("sdclip", "gptq") and float(tok[1:]) > 0:
        return replace(spec, k=float(tok[1:]))
    if re.fullmatch(r"p\d+(\.\d+)?", tok) and spec.algo == "pct" and 0 < float(tok[1:]) <= 100:
        return replace(spec, pct=float(tok[1:]))
    raise MethodError(f"method {name!r}: option {tok!r} does not apply to {spec.algo} "
                      "(see 'pgc methods' for the grammar)")


class GridMethod(Method):
    """Base of the integer-grid families: subclasses choose codes and qparams for W [out, in]."""

    def __init__(self, name: str):
        self.name = name
        self.spec = parse_name(name)

    @property
    def grid(self) -> G.Grid:
        return self.spec.grid

    @property
    def lqer_rank(self) -> int:
        return self.spec.lqer_rank

    @property
    def wants_hessians(self) -> bool:
        return self.needs_hessians or bool(self.spec.lqer_rank)

    def quantize_matrix(self, name: str, W: torch.Tensor, ctx: QuantContext) -> tuple[torch.Tensor, G.QParams, dict]:
        """W [out, in] fp32 -> (codes [out, in] int8, qparams over [out * groups], extra params)."""
        raise NotImplementedError

    def quantize(self, name: str, w: torch.Tensor, ctx: QuantContext) -> Encoded:
        if not w.is_floating_point():
            raise MethodError(f"tensor {name!r}: {self.name} quantizes float tensors only, got {w.dtype}")
        W = G.as_matrix(w.detach().to("cpu", torch.float32))
        G.to_rows(W, self.spec.group)  # fails early, naming the tensor's shape, if groups do not fit
        codes, qp, extra = self._codes(name, W, ctx)
        grid = self.grid
        params = {"bits": grid.bits, "sym": grid.symmetric, "group": grid.group_size,
                  "scale_dtype": grid.scale_dtype, **extra}
        # codes stay [out, in]: matrix streams let the rans-ctx2 codec model rows and columns
        streams = {"q": codes.reshape(W.shape).numpy(), "scale": _scale_to_numpy(qp.scale, grid.scale_dtype)}
        if qp.zero is not None:
            streams["zero"] = qp.zero.to(torch.int8).numpy()
        if self.spec.lqer_rank:
            W_hat = _dequantize_base(codes, qp, W.shape, grid.group_size)
            fac = lqer.fit(W - W_hat, ctx.hessians.get(name), self.spec.lqer_rank, self.spec.lqer_bits)
            params.update(lqer_rank=fac.rank, lqer_bits=self.spec.lqer_bits)
            streams.update(lqer.to_streams(fac))
        return Encoded(self.name, params, streams)

    def _codes(self, name: str, W: torch.Tensor, ctx: QuantContext):
        if ctx.memo is None:
            return self.quantize_matrix(name, W, ctx)
        key = (name, replace(self.spec, lqer_rank=0, lqer_bits=0))  # the codes' spec: +lqer variants share it
        if key not in ctx.memo:
            ctx.memo[key] = self.quantize_matrix(name, W, ctx)
        return ctx.memo[key]

    def dequantize(self, enc: Encoded, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return grid_dequantize(self.name, enc.params, enc.streams, tuple(shape), dtype)

    @property
    def decode_fn(self):
        return grid_dequantize


def _scale_to_numpy(scale: torch.Tensor, scale_dtype: str) -> np.ndarray:
    s = scale.to(G.SCALE_DTYPES[scale_dtype])
    return s.view(torch.uint16).numpy() if scale_dtype == "bf16" else s.numpy()


def _dequantize_base(codes: torch.Tensor, qp: G.QParams, shape2d, group: int) -> torch.Tensor:
    rows = G.to_rows(codes, group)
    return G.dequantize_rows(rows, qp).reshape(shape2d)


def grid_check(method, params, streams, out, cols):
    """A stored grid tensor's params and streams, checked against its [out, cols] view and the bit
    width in its method name (params and streams come from a file). Plain: the library's dequantize
    and the submission decoder run the same checks."""
    bits, sym, group, sd = (params.get(k) for k in ("bits", "sym", "group", "scale_dtype"))
    if type(bits) is not int or type(sym) is not bool or type(group) is not int or sd not in ("fp16", "bf16"):
        raise FormatError(f"bad grid params {str(params)[:200]}")
    if not 2 <= bits <= 8 or (group and group not in (32, 64, 128, 256)):
        raise FormatError(f"bad grid: {bits} bits, group {group}")
    if method[:3] == "int" and method[3:4].isdigit() and int(method[3]) != bits:
        raise FormatError(f"params say {bits} bits, the method name {method[:3 + 1]}")
    if group and cols % group:
        raise FormatError(f"group size {group} does not divide the input dim {cols}")
    qmax = 2 ** (bits - 1) - 1
    qmin = -qmax if sym else -qmax - 1
    n_scales = out * (cols // group if group else 1)
    q = check_stream(streams, "q", out * cols, "int8")
    if q.size and (int(q.min()) < qmin or int(q.max()) > qmax):
        raise FormatError(f"codes outside the {bits}-bit grid [{qmin}, {qmax}]")
    check_stream(streams, "scale", n_scales, "uint16" if sd == "bf16" else "float16")
    if not sym:
        z = check_stream(streams, "zero", n_scales, "int8")
        if z.size and (int(z.min()) < qmin or int(z.max()) > qmax):
            raise FormatError("zero points outside the grid")
    elif "zero" in streams:
        raise FormatError("a symmetric grid tensor carries zero points")
    if "lqer_rank" in params:
        lqer_check(params, streams, out, cols)


def grid_matrix(params, streams, out, cols):
    """Validated stored grid tensor -> fp32 [out, cols]. Plain (torch/numpy only): the library's
    dequantize and the submission decoder both run it."""
    group = params["group"]
    codes = torch.from_numpy(np.ascontiguousarray(streams["q"]).copy()).reshape(out, cols)
    rows = codes.reshape(out * (cols // group), group) if group else codes
    raw = np.ascontiguousarray(streams["scale"])
    if params["scale_dtype"] == "bf16":
        scale = torch.from_numpy(raw.view(np.int16).copy()).view(torch.bfloat16).float()
    else:
        scale = torch.from_numpy(raw.copy()).float()
    zero = None
    if "zero" in streams:
        zero = torch.from_numpy(np.ascontiguousarray(streams["zero"]).astype(np.int32))[:, None]
    W_hat = dequantize(rows, scale[:, None], zero).reshape(out, cols)
    if "lqer_rank" in params:
        W_hat = W_hat + lqer_correction(params, streams, out, cols)
    return W_hat


def grid_dequantize(method, params, streams, shape, dtype):
    """Stored grid tensor -> ``dtype`` tensor of ``shape`` (the decode_fn of every intN family),
    checked first."""
    out, cols = matrix_dims(shape)
    grid_check(method, params, streams, out, cols)
    return grid_matrix(params, streams, out, cols).to(dtype).reshape(shape)


def register_family(algo: str, cls: type, summary: str) -> None:
    register_method(family_pattern(algo), lambda m: cls(m.group(0)), summary)
