"""An independent implementation of the reference int8 export (spec section 6), for the tests.

Written from the spec's text with numpy float32 arithmetic (not torch, not pgcompress), so that it
can catch a pgcompress implementation that drifts from the rules. It returns what the reference's
own export -> import produces: the dequantized state dict, plus the export's payload pieces.
"""

from __future__ import annotations

import numpy as np
import torch

Q = np.float32(0.9999984)
CONTROL = ("attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix", "resid_mixes",
           "q_gain", "skip_weight", "skip_weights")


def lerp32(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """torch.lerp's formula in float32: a + w*(b-a) for w < 0.5, else b - (b-a)*(1-w)."""
    a, b, w = (np.asarray(x, dtype=np.float32) for x in (a, b, w))
    diff = (b - a).astype(np.float32)
    low = (a + (w * diff).astype(np.float32)).astype(np.float32)
    high = (b - (diff * (np.float32(1) - w)).astype(np.float32)).astype(np.float32)
    return np.where(np.abs(w) < 0.5, low, high).astype(np.float32)


def quantile_rows(x: np.ndarray) -> np.ndarray:
    """Linear-interpolation quantile Q of each row of x (float32), as torch computes it."""
    n = x.shape[1]
    srt = np.sort(x, axis=1)
    rank = np.float32(Q * np.float32(n - 1))
    lo = int(np.floor(rank))
    hi = int(np.ceil(rank))
    w = np.float32(rank - np.float32(lo))
    return lerp32(srt[:, lo], srt[:, hi], np.full(x.shape[0], w, dtype=np.float32))


def _to_np32(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).numpy().astype(np.float32)


def export_import(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict the reference's int8 export followed by its import would give."""
    out = {}
    for name, t in sd.items():
        if not t.is_floating_point():
            out[name] = t.clone()
        elif t.numel() <= 65536:
            if any(p in name for p in CONTROL):
                out[name] = t.to(torch.float32)
            elif t.dtype in (torch.float32, torch.bfloat16):
                out[name] = t.to(torch.float16).to(t.dtype)
            else:
                out[name] = t.clone()
        elif t.ndim == 2:
            w = _to_np32(t)
            if w.size:
                clip = quantile_rows(np.abs(w))
            else:
                clip = np.zeros(w.shape[0], dtype=np.float32)
            scale32 = np.maximum((clip / np.float32(127.0)).astype(np.float32), np.float32(1.0 / 127.0))
            clipped = np.minimum(np.maximum(w, -clip[:, None]), clip[:, None])
            q = np.clip(np.round(clipped / scale32[:, None]), -127, 127).astype(np.int8)
            scale16 = scale32.astype(np.float16)
            deq = (q.astype(np.float32) * scale16.astype(np.float32)[:, None]).astype(np.float32)
            out[name] = torch.from_numpy(deq).to(t.dtype)
        else:
            w = _to_np32(t).reshape(1, -1)
            clip = float(quantile_rows(np.abs(w))[0]) if w.size else 0.0
            scale = np.float32(clip / 127.0 if clip > 0 else 1.0)
            c32 = np.float32(clip)
            q = np.clip(np.round(np.clip(w, -c32, c32) / scale), -127, 127).astype(np.int8)
            deq = (q.astype(np.float32) * scale).astype(np.float32).reshape(tuple(t.shape))
            out[name] = torch.from_numpy(deq).to(t.dtype)
    return out


def reference_payload(sd: dict[str, torch.Tensor]) -> dict:
    """The reference export's dict (int8 codes, fp16 scales, passthrough) as it torch.saves it."""
    quantized, scales, dtypes, passthrough, orig = {}, {}, {}, {}, {}
    for name, t in sd.items():
        if not t.is_floating_point():
            passthrough[name] = t
        elif t.numel() <= 65536:
            if any(p in name for p in CONTROL):
                passthrough[name] = t.float()
            elif t.dtype in (torch.float32, torch.bfloat16):
                orig[name] = str(t.dtype).removeprefix("torch.")
                passthrough[name] = t.to(torch.float16)
            else:
                passthrough[name] = t
        else:
            w = _to_np32(t)
            clip = quantile_rows(np.abs(w))
            scale32 = np.maximum((clip / np.float32(127.0)).astype(np.float32), np.float32(1.0 / 127.0))
            clipped = np.minimum(np.maximum(w, -clip[:, None]), clip[:, None])
            quantized[name] = torch.from_numpy(np.clip(np.round(clipped / scale32[:, None]), -127, 127).astype(np.int8))
            scales[name] = torch.from_numpy(scale32.astype(np.float16))
            dtypes[name] = str(t.dtype).removeprefix("torch.")
    return {"__quant_format__": "int8_clean_per_row_v1", "quantized": quantized, "scales": scales,
            "dtypes": dtypes, "passthrough": passthrough, "qmeta": {n: {"scheme": "per_row", "axis": 0} for n in quantized},
            "passthrough_orig_dtypes": orig}
