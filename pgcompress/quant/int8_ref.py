"""``int8-ref``: the challenge's reference per-row int8 export, reproduced bit for bit.

Rules (spec section 6): 2-D float tensors get one float16 scale per row,
``clip = quantile(|row|, 0.9999984)`` (linear interpolation), ``scale = max(clip/127, 1/127)``,
``q = clamp(round(clamp(w, -clip, clip) / scale_fp32), -127, 127)``; the codes are rounded with
the float32 scale while the stored scale is float16. Other float tensors get one float32 scale
(``clip/127``, or 1.0 when clip is 0). Dequantization: ``q.float() * scale.float()`` cast to the
original dtype. Which tensors are quantized at all is decided by ``pgcompress.quant.policy``.
"""

from __future__ import annotations

import numpy as np
import torch

from pgcompress.errors import FormatError
from pgcompress.quant.base import Encoded, Method, QuantContext, TensorKind
from pgcompress.quant.streams import check_stream
from pgcompress.registry import register_method

CLIP_Q = 99.99984 / 100.0
_TORCH_QUANTILE_MAX_NUMEL = 1 << 24  # torch.quantile refuses larger inputs


def quantile_linear(x: torch.Tensor, q: float) -> torch.Tensor:
    """torch.quantile(x, q, dim=-1) with linear interpolation, for inputs of any size.

    Uses torch.quantile where it accepts the input and otherwise mirrors its arithmetic
    (fp32 rank = q * (n - 1), gather below/above, lerp), so results do not depend on size.
    """
    # x: [..., n] fp32 -> [...] fp32
    if x.numel() <= _TORCH_QUANTILE_MAX_NUMEL:
        return torch.quantile(x, q, dim=-1)
    rows = x.reshape(-1, x.shape[-1])
    if rows.shape[0] > 1:
        step = max(1, _TORCH_QUANTILE_MAX_NUMEL // rows.shape[1])
        parts = [quantile_linear(rows[i:i + step], q) for i in range(0, rows.shape[0], step)]
        return torch.cat(parts).reshape(x.shape[:-1])
    srt = torch.sort(rows, dim=-1).values
    rank = torch.tensor(q, dtype=x.dtype) * (srt.shape[-1] - 1)
    below = rank.to(torch.long).reshape(1, 1)
    above = rank.ceil().to(torch.long).reshape(1, 1)
    lo = srt.gather(-1, below)
    hi = srt.gather(-1, above)
    return lo.lerp(hi, rank - below.to(x.dtype)).reshape(x.shape[:-1])


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w: [rows, cols] float -> (q [rows, cols] int8, scale [rows] fp16)."""
    w32 = w.float()
    if w32.numel():
        clip = quantile_linear(w32.abs(), CLIP_Q)
    else:
        clip = torch.zeros(w32.shape[0], dtype=torch.float32)
    clipped = torch.maximum(torch.minimum(w32, clip[:, None]), -clip[:, None])
    scale = (clip / 127.0).clamp_min(1.0 / 127.0)
    q = torch.clamp(torch.round(clipped / scale[:, None]), -127, 127).to(torch.int8)
    return q, scale.to(torch.float16)


def quantize_tensor(w: torch.Tensor) -> tuple[torch.Tensor, float]:
    """w: any shape float -> (q int8 same shape, scale as a float32 value)."""
    w32 = w.float()
    clip = float(quantile_linear(w32.abs().reshape(-1), CLIP_Q).item()) if w32.numel() else 0.0
    scale = torch.tensor(clip / 127.0 if clip > 0 else 1.0, dtype=torch.float32)
    q = torch.clamp(torch.round(torch.clamp(w32, -clip, clip) / scale), -127, 127).to(torch.int8)
    return q, float(scale.item())


class Int8Ref(Method):
    name = "int8-ref"

    def quantize(self, name: str, w: torch.Tensor, ctx: QuantContext) -> Encoded:
        w = w.detach().to("cpu")
        if w.ndim == 2:
            q, scale = quantize_rows(w)
            return Encoded(self.name, {"scheme": "row"}, {"q": q.numpy(), "scale": scale.numpy()})
        q, scale = quantize_tensor(w)
        # the float32 scale is exact in JSON: a Python float holds every float32 value
        return Encoded(self.name, {"scheme": "tensor", "scale": scale}, {"q": q.numpy().reshape(-1)})

    def dequantize(self, enc: Encoded, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return int8_ref_dequantize(enc.method, enc.params, enc.streams, tuple(shape), dtype)

    @property
    def decode_fn(self):
        return int8_ref_dequantize


def int8_ref_dequantize(method, params, streams, shape, dtype):
    """q.float() * scale.float() -> dtype, checked first. A plain function: the submission decoder
    copies it."""
    numel = 1
    for d in shape:
        numel *= d
    check_stream(streams, "q", numel, "int8")
    scheme = params.get("scheme")
    if scheme == "row":
        if len(shape) != 2:
            raise FormatError(f"int8-ref: per-row scheme on a {len(shape)}-D tensor")
        check_stream(streams, "scale", shape[0], "float16")
    elif scheme != "tensor" or type(params.get("scale")) is not float:
        raise FormatError(f"int8-ref: bad params {str(params)[:200]}")
    q = torch.from_numpy(np.ascontiguousarray(streams["q"]).copy()).reshape(shape)
    if params["scheme"] == "row":
        s = torch.from_numpy(np.ascontiguousarray(streams["scale"]).copy()).to(torch.float32)
        return (q.float() * s.view(shape[0], 1)).to(dtype)
    return (q.float() * float(np.float32(params["scale"]))).to(dtype)


def int8_ref_candidates(kind: TensorKind) -> list[str]:
    """The reference export's own grid, so the solver never does worse than it on a 2-D weight."""
    return ["int8-ref"] if kind.is_matrix and len(kind.shape) == 2 else []


register_method("int8-ref", lambda m: Int8Ref(),
                "the challenge's reference per-row int8 export, bit-exact (clip q=0.9999984)",
                candidates=int8_ref_candidates)
