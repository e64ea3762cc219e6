"""``unpack(..., device=)``: integer-grid tensors go through bit-packing and ``kernels.dequant_packed``
(the eval's CUDA path); the values must be identical to the methods' own CPU dequantize."""

from __future__ import annotations

import pytest
import torch

import pgcompress

METHODS = ["int2-rtn", "int3-sdclip", "int5-rtn-g64-asym", "int6-rtn-bf16", "int7-clip-g32", "int8-ref", "int8-rtn",
           "int4-rtn+lqer"]


@pytest.mark.parametrize("method", METHODS)
def test_device_unpack_equals_the_cpu_dequantize(method, monkeypatch):
    import pgcompress.kernels.dequant as kd

    calls = []
    real = kd.dequant_packed
    monkeypatch.setattr(kd, "dequant_packed", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    g = torch.Generator().manual_seed(len(method))
    sd = {"a.weight": torch.randn(301, 256, generator=g) * 0.05,  # ragged rows, above the keep-float size
          "bank": (torch.randn(3, 200, 128, generator=g) * 0.1).to(torch.bfloat16),
          "vec": torch.randn(70_016, generator=g)}
    data = pgcompress.pack(sd, method=method)
    cpu = pgcompress.unpack(data)
    dev = pgcompress.unpack(data, device="cpu")
    assert list(cpu) == list(dev)
    for k in sd:
        assert dev[k].dtype == cpu[k].dtype and dev[k].shape == cpu[k].shape
        assert torch.equal(dev[k].view(torch.int16) if dev[k].dtype == torch.bfloat16 else dev[k],
                           cpu[k].view(torch.int16) if cpu[k].dtype == torch.bfloat16 else cpu[k]), (method, k)
    # the packed path ran for the grid tensors (LQER and int8-ref keep their own dequantize)
    own_format = "lqer" in method or method == "int8-ref"  # not the plain grid layout
    assert (len(calls) == 0) if own_format else (len(calls) >= 3 and set(calls) == {int(method[3])})
    # and not trivially: the quantized matrix differs from the original
    assert not torch.equal(dev["a.weight"], sd["a.weight"])


def test_device_unpack_validates_like_the_cpu_path():
    from pgcompress.errors import FormatError
    from pgcompress.unpack import _grid_on_device

    params = {"bits": 4, "sym": True, "group": 0, "scale_dtype": "fp16"}
    import numpy as np

    streams = {"q": np.full((4, 8), 9, dtype=np.int8), "scale": np.ones(4, dtype=np.float16)}
    with pytest.raises(FormatError, match="outside the 4-bit grid"):
        _grid_on_device("int4-rtn", params, streams, (4, 8), torch.float32, torch.device("cpu"))
