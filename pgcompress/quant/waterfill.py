"""``wf{B}[-kfac]``: unequal-rate quantization with per-column steps from the Hessian's Cholesky
factor ("waterfilling"), entropy-coded integer codes.

The WaterSIC idea (Lifar, Savkin, Ordentlich, Polyanskiy, "WaterSIC: information-theoretically
(near) optimal linear layer quantization", arXiv 2603.04956): with H = sum x x^T the output error
is tr(E H E^T), and in GPTQ's successive cancellation (``gptq.GPTQ.run``) the rounding error of
column i, once the columns before it are fixed, weighs 1 / U_ii^2 (U: upper Cholesky factor of
H^-1 in the quantization order). A step of ``c * U_ii`` for column i makes every column's share of
the output error the same, c^2 / 12 per weight - reverse waterfilling at high rate - which saves
0.5 * log2(AM(U_ii^-2) / GM(U_ii^-2)) bits per weight over one step for all columns at equal
error. Columns whose residual never reaches half a step round to zero (rate 0): an all-zero column
costs the entropy coder almost nothing. Codes are unbounded integers (clamped at +-ZMAX only so the
context coder's alphabet holds them).

- LMMSE shrinkage: after rounding column i, its reconstruction is scaled by
  gamma = <r, v> / <v, v> in [GAMMA_MIN, 1] (r the residual it was fitted to, v the rounded
  values, per rung and weighted like the error), and the error fed forward is the shrunk one.
- ``-kfac``: rows weighted by the calibration's output sensitivity a[r] (the solver's K-FAC proxy
  weighs row r's error by a[r]): row steps proportional to a[r]^-1/2 equalize the error there too.
- B is the rate the high-rate approximation predicts (each column Gaussian with its RMS, coded at
  h(w) - log2(step) bits, columns below the water level at 0), so ``wf3.5`` lands near 3.5 coded bits
  per weight; the measured rate is what the budget solver uses.

Stored form: params ``{"slices": S, "rows": bool}``; streams ``z`` (int8 or int16 codes [out, in]),
``col`` (int16 [S, in]: column scale codes of each bank slice), ``row`` (int16 [out], ``-kfac``
only). A scale code e stands for 2^(e/32), computed exactly (``log_scale``); dequantization is
``(z * row[r]) * col[i]`` in fp32, the same arithmetic the recursion fed back.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from pgcompress.errors import FormatError, MethodError
from pgcompress.quant.base import Encoded, Method, QuantContext, TensorKind
from pgcompress.quant.gptq import GPTQ, slice_hessians
from pgcompress.quant.grid import as_matrix, matrix_dims
from pgcompress.quant.streams import check_stream
from pgcompress.registry import register_method

ZMAX = 2047  # codes in [-ZMAX, ZMAX]: the context coders' alphabet is under 4096 symbols
# A column's step is at least its largest |w| / (CODE_CAP * 2^(B - 3.5)) at nominal rate B: the few
# columns the Hessian wants at many more bits than the rest (massive-activation inputs of late
# layers want 11+) are held to a code range that grows with the rate, which keeps the alphabet (and
# the context coder's fit time) in check; what it costs is measured in bench/results/waterfill.md.
CODE_CAP = 128.0
SCALE_STEPS = 32  # scale codes per octave (2.2% apart)
E_MAX = 32 * 48  # scale codes in [-E_MAX, E_MAX]: 2^-48 .. 2^48, normal fp32 with room for products
WF_MANTISSA = tuple(float(np.float32(2.0 ** (k / 32))) for k in range(32))
GAMMA_MIN = 1 / 16
SENS_FLOOR = 1e-3  # rows less sensitive than this times the mean are treated as this sensitive
GAUSS_H = 0.5 * math.log2(2 * math.pi * math.e)  # differential entropy of a unit Gaussian, bits
MAX_STACK = 1 << 26  # elements in one stacked pass (rungs x rows x columns), ~256 MB fp32
# Rates the budget solver is offered (nominal bits per weight)
LADDER = (1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0)
PATTERN = r"wf(\d+(?:\.\d+)?)(-kfac)?"


@dataclass(frozen=True)
class WfName:
    bits: float
    kfac: bool


def parse_name(name: str) -> WfName:
    m = re.fullmatch(PATTERN, name)
    if not m or not 0.25 <= float(m.group(1)) <= 12:
        raise MethodError(f"bad method name {name!r}; grammar: wf{{B}}[-kfac], B a rate in bits per weight, 0.25..12")
    return WfName(float(m.group(1)), bool(m.group(2)))


def scale_code(x: torch.Tensor) -> torch.Tensor:
    """Positive scales -> the nearest scale codes (int64), clamped to [-E_MAX, E_MAX]."""
    e = torch.round(torch.log2(x.double()) * SCALE_STEPS)
    return e.clamp(-E_MAX, E_MAX).to(torch.int64)


def log_scale(e: np.ndarray) -> np.ndarray:
    """Scale codes -> 2^(e/32) as fp32, exactly (a table and a power of two, no libm). Plain: the
    submission decoder copies it."""
    e = np.asarray(e, dtype=np.int64)
    mant = np.asarray(WF_MANTISSA, dtype=np.float32)[e % SCALE_STEPS]
    return np.ldexp(mant, (e // SCALE_STEPS).astype(np.int32)).astype(np.float32)


def _scales(e: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(log_scale(e.cpu().numpy()))


def nominal_step(W: torch.Tensor, u: torch.Tensor, rowv: torch.Tensor, bits: float) -> float:
    """The c whose high-rate predicted rate is ``bits`` per weight: column i (RMS s_i of W / row
    factor) costs max(0, log2(s_i / (c u_i)) + GAUSS_H) bits. W [out, n], u [n], rowv [out]."""
    s = (W.double() / rowv.double()[:, None]).square().mean(dim=0).sqrt()
    live = s > 0
    if not bool(live.any()):
        return 1.0
    t = torch.log2(s[live] / u.double()[live]) + GAUSS_H  # rate of column i is max(0, t_i - log2 c)

    def rate(log_c: float) -> float:
        return float((t - log_c).clamp_min(0).sum()) / s.numel()

    lo, hi = float(t.min()) - bits - 1, float(t.max())  # rate(lo) >= bits, rate(hi) = 0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if rate(mid) > bits else (lo, mid)
    return 2.0 ** ((lo + hi) / 2)


def row_factors(a: torch.Tensor | None, out: int) -> torch.Tensor | None:
    """Output sensitivities a [out] -> row scale codes ∝ a^-1/2 (mean-normalized), or None."""
    if a is None:
        return None
    a = a.double().clamp_min(0)
    mean = float(a.mean())
    if not mean > 0:
        return torch.zeros(out, dtype=torch.int64)
    return scale_code((a.clamp_min(SENS_FLOOR * mean) / mean).rsqrt())


@dataclass
class Rung:
    """One rate of one matrix: codes [out, n] int64, column scale codes [n], row codes [out] | None."""

    z: torch.Tensor
    col: torch.Tensor
    row: torch.Tensor | None


def waterfill(W: torch.Tensor, H: torch.Tensor, rates: list[float], a: torch.Tensor | None = None,
              shrink: bool = True, col_steps: torch.Tensor | None = None, cs: list[float] | None = None,
              device: str = "cpu", cap: float | None = CODE_CAP) -> list[Rung]:
    """W [out, n] fp32, H [n, n] -> one Rung per rate, all in one successive-cancellation pass per
    chunk of rungs (rows stacked: rungs are independent given H).

    a: output sensitivities [out] (row weighting), None: rows equal. col_steps: per-column step
    multipliers [n] replacing the Cholesky ones (tests: all equal gives GPTQ's recursion); cs: the
    spacing constants c instead of the rates' nominal ones; cap: the code range at 3.5 bits (CODE_CAP), None: no floor."""
    out, n = W.shape
    W = W.to(device, torch.float32)
    g = GPTQ(W, H.to(device, torch.float32), grid=None)
    perm, U = g.order()
    u = torch.empty(n, dtype=torch.float32, device=device)
    u[perm] = U.diagonal().float()
    if col_steps is not None:
        u = col_steps.to(device, torch.float32)
    row_e = row_factors(a, out)
    rowv = _scales(row_e).to(device) if row_e is not None else torch.ones(out, device=device)
    weight = a.to(device, torch.float64).clamp_min(0) if a is not None else None
    cs = cs if cs is not None else [nominal_step(W.cpu(), u.cpu(), rowv.cpu(), b) for b in rates]
    peak = (W / rowv[:, None]).abs().amax(dim=0)  # [n]
    caps = [cap * 2.0 ** (b - 3.5) if cap and b else 0.0 for b in (rates if len(rates) == len(cs) else [0] * len(cs))]
    per_chunk = max(1, MAX_STACK // max(1, out * n))
    rungs: list[Rung] = []
    for k0 in range(0, len(cs), per_chunk):
        chunk = cs[k0:k0 + per_chunk]
        floor = torch.stack([peak / k if k else torch.zeros_like(peak) for k in caps[k0:k0 + per_chunk]])
        steps = torch.maximum(torch.tensor(chunk, device=device)[:, None] * u[None, :], floor)  # [K, n]
        z, col = _stacked_pass(g, perm, U, W, steps, rowv, weight, shrink)
        for k in range(len(chunk)):
            rungs.append(Rung(z[k * out:(k + 1) * out].cpu(), col[k].cpu(), row_e))
    return rungs


def _stacked_pass(g: GPTQ, perm, U, W, steps, rowv, weight, shrink):
    """steps [K, n]: each rung's column steps before shrinkage -> (codes [K * out, n], col codes [K, n])."""
    K, (out, n) = steps.shape[0], W.shape
    dev = W.device
    rowv_k = rowv.repeat(K)
    wt = None if weight is None else weight.repeat(K).reshape(K, out)
    col_e = torch.zeros((K, n), dtype=torch.int64, device=dev)

    def column(i: int, w: torch.Tensor, _u: float):
        step = steps[:, i].double()  # [K]
        z = torch.round(w / (steps[:, i, None] * rowv[None, :]).reshape(-1)).clamp_(-ZMAX, ZMAX)
        v = (z * rowv_k).reshape(K, out)  # the reconstruction before the column scale, per rung
        r = w.reshape(K, out)
        if shrink:
            ww = 1.0 if wt is None else wt
            num = (ww * r.double() * v.double()).sum(dim=1)
            den = (ww * v.double().square()).sum(dim=1)
            gamma = torch.where(den > 0, num / den.clamp_min(1e-300) / step, torch.ones_like(num)).clamp(GAMMA_MIN, 1.0)
        else:
            gamma = torch.ones(K, dtype=torch.float64, device=dev)
        e = scale_code(step * gamma)
        e = torch.where((z.reshape(K, out) != 0).any(dim=1), e, torch.zeros_like(e))  # rate-0 column
        col_e[:, i] = e
        colv = _scales(e).to(dev)
        w_hat = (v * colv[:, None]).reshape(-1)  # the decoder's (z * row) * col, fp32
        return z.to(torch.int64), w_hat.to(w.dtype)

    Wst = W.repeat(K, 1)
    g2 = GPTQ(Wst, g.H, grid=None, blocksize=g.blocksize, percdamp=g.percdamp, actorder=g.actorder)
    z = g2.run(column, (perm, U))
    return z, col_e


def encode_rungs(name: str, rungs: list[Rung]) -> Encoded:
    """The Encoded of method ``name`` (a wf* name) from its rungs, one per bank slice in slice order
    (one for a plain matrix): what ``WaterfillMethod.quantize`` returns, for callers that run
    ``waterfill`` themselves (tests, bench/waterfill.py)."""
    z = torch.cat([r.z for r in rungs])
    zmax = int(z.abs().max()) if z.numel() else 0
    zdt = np.int8 if zmax <= 127 else np.int16
    streams = {"z": z.numpy().astype(zdt), "col": torch.cat([r.col for r in rungs]).numpy().astype(np.int16)}
    rows = rungs[0].row is not None
    if rows:
        streams["row"] = torch.cat([r.row for r in rungs]).numpy().astype(np.int16)
    return Encoded(name, {"slices": len(rungs), "rows": rows}, streams)


class WaterfillMethod(Method):
    needs_hessians = wants_hessians = True

    def __init__(self, name: str):
        self.name = name
        self.spec = parse_name(name)
        self.needs_sensitivity = self.spec.kfac

    def quantize(self, name: str, w: torch.Tensor, ctx: QuantContext) -> Encoded:
        if not w.is_floating_point():
            raise MethodError(f"tensor {name!r}: {self.name} quantizes float tensors only, got {w.dtype}")
        W = as_matrix(w.detach().to("cpu", torch.float32))
        key = (name, "wf-kfac" if self.spec.kfac else "wf")
        memo = ctx.memo if ctx.memo is not None else {}
        if key not in memo or self.spec.bits not in memo[key]:
            rates = sorted(set(LADDER) | {self.spec.bits}) if ctx.memo is not None else [self.spec.bits]
            memo[key] = dict(zip(rates, self._slices(name, W, ctx, rates)))
        return encode_rungs(self.name, list(memo[key][self.spec.bits]))

    def _slices(self, name: str, W: torch.Tensor, ctx: QuantContext, rates: list[float]):
        """Per bank slice (one for a plain matrix): its rungs, one per rate."""
        H = ctx.hessians.get(name)
        keys, Hs = ([name], [H]) if H is not None else (None, slice_hessians(name, ctx.hessians, W.shape[0]))
        if Hs is None:
            raise MethodError(f"{self.name}: the calibration has no Hessian for {name!r}; give it another "
                              f"method (e.g. int6-sdclip-kauto) or calibrate with --calib-shards / --calib-selfgen")
        keys = keys or [f"{name}[{i}]" for i in range(len(Hs))]
        step = W.shape[0] // len(Hs)
        out = []
        for i, (key, Hi) in enumerate(zip(keys, Hs)):
            a = None
            if self.spec.kfac:
                a = ctx.out_sens.get(key)
                if a is None:
                    raise MethodError(f"{self.name}: no output sensitivity for {key!r} (it needs a calibration with a "
                                      f"backward pass, as the budget solver runs); use wf{self.spec.bits:g}")
            out.append(waterfill(W[i * step:(i + 1) * step], Hi, rates, a, device=ctx.device))
        return [list(r) for r in zip(*out)]  # [rate][slice]

    def dequantize(self, enc: Encoded, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return wf_dequantize(self.name, enc.params, enc.streams, tuple(shape), dtype)

    @property
    def decode_fn(self):
        return wf_dequantize


def wf_check(params, streams, out, cols):
    """A stored waterfill tensor's params and streams, checked against its [out, cols] view (they
    come from a file) before anything is allocated. Plain: the submission decoder runs it."""
    slices, rows = params.get("slices"), params.get("rows")
    if type(slices) is not int or type(rows) is not bool or slices < 1 or out % slices:
        raise FormatError(f"bad waterfill params {str(params)[:200]}")
    z = streams.get("z")
    if z is None or z.dtype.name not in ("int8", "int16"):
        raise FormatError("waterfill codes must be an int8 or int16 stream 'z'")
    z = check_stream(streams, "z", out * cols, z.dtype.name)
    if z.size and int(np.abs(z.astype(np.int32)).max()) > ZMAX:
        raise FormatError(f"waterfill codes outside [-{ZMAX}, {ZMAX}]")
    scales = [("col", slices * cols)] + ([("row", out)] if rows else [])
    if not rows and "row" in streams:
        raise FormatError("a waterfill tensor without row scales carries a 'row' stream")
    for role, count in scales:
        e = check_stream(streams, role, count, "int16")
        if e.size and int(np.abs(e.astype(np.int32)).max()) > E_MAX:
            raise FormatError(f"waterfill scale codes in {role!r} outside [-{E_MAX}, {E_MAX}]")


def wf_matrix(params, streams, out, cols):
    """Validated stored waterfill tensor -> fp32 [out, cols]: (z * row[r]) * col[slice, i]."""
    slices = params["slices"]
    z = np.ascontiguousarray(streams["z"]).astype(np.float32).reshape(slices, out // slices, cols)
    if params["rows"]:
        z = z * log_scale(streams["row"]).reshape(slices, out // slices, 1)
    W = z * log_scale(streams["col"]).reshape(slices, 1, cols)
    return torch.from_numpy(np.ascontiguousarray(W).reshape(out, cols))


def wf_dequantize(method, params, streams, shape, dtype):
    """Stored waterfill tensor -> ``dtype`` tensor of ``shape``, checked first (the decode_fn)."""
    out, cols = matrix_dims(shape)
    wf_check(params, streams, out, cols)
    return wf_matrix(params, streams, out, cols).to(dtype).reshape(shape)


def wf_candidates(kind: TensorKind) -> list[str]:
    """The ladder for every matrix calibration gave a Hessian (and output sensitivities: -kfac)."""
    if not (kind.is_matrix and kind.has_hessian):
        return []
    suffix = "-kfac" if kind.has_sensitivity else ""
    return [f"wf{b:g}{suffix}" for b in LADDER]


register_method(PATTERN, lambda m: WaterfillMethod(m.group(0)),
                "unequal-rate (waterfilled) columns: steps c * U_ii from the Hessian's Cholesky factor, "
                "successive cancellation, LMMSE shrinkage, entropy-coded codes; B = nominal bits per weight; "
                "-kfac: rows weighted by output sensitivity (needs a calibration with gradients)",
                readable="wf<B>[-kfac]", example="wf3.5", candidates=wf_candidates)
