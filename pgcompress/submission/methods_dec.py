"""Dequantize functions of the submittable methods, as plain functions (torch + numpy only).

Interim home: these mirror pgcompress.quant.int8_ref / passthrough bit for bit (tested against
``unpack``) until those modules expose their dequantize as plain functions themselves.
Signature: (method, params, streams {role: numpy array}, shape, torch dtype) -> tensor.
"""

import numpy as np
import torch


def int8_ref_dequantize(method, params, streams, shape, dtype):
    q = torch.from_numpy(streams["q"].copy()).reshape(shape)
    if params.get("scheme") == "row":
        s = torch.from_numpy(streams["scale"].copy()).to(torch.float32)
        return (q.float() * s.view(shape[0], 1)).to(dtype)
    return (q.float() * float(np.float32(params["scale"]))).to(dtype)


def float_dequantize(method, params, streams, shape, dtype):
    """raw / fp16 / bf16 / fp32: the stored bits as a tensor, then the method's output dtype."""
    data = np.ascontiguousarray(streams["data"])
    stored = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}.get(method, dtype)
    if stored == torch.bfloat16:
        t = torch.from_numpy(data.view(np.int16).copy()).view(torch.bfloat16)
    else:
        t = torch.from_numpy(data.copy())
    t = t.reshape(shape)
    return t.to(torch.float32 if method == "fp32" else dtype)
