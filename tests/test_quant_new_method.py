"""Adding a quantization method is one small class and one registration line (issue #31, item 3).

The method below, ``sign`` (XNOR-Net's binarization, Rastegari et al. 2016: each row stored as the
signs of its weights and one scale, the row's mean |w|), exists only in this file. Registered with
nothing else, it packs, unpacks (on the CPU and through the device path), decodes in a generated
submission decoder, is listed by ``pgc methods``, and every caller that asks a method what it is
(unpack's device path, QAT, ``lqer_targets``) treats it by its declared attributes. The budget
solver offers a method only where its family says for which tensors: the same one line with
``candidates=``, shown last.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli_run import run_main

import pgcompress
from pgcompress import registry
from pgcompress.errors import FormatError, MethodError
from pgcompress.quant.base import Encoded, Method, QuantContext
from pgcompress.quant.grid import as_matrix, matrix_dims
from pgcompress.quant.streams import check_stream


def sign_dequantize(method, params, streams, shape, dtype):
    """Stored sign tensor -> ``dtype`` tensor of ``shape``: codes s [out, in] in {-1, 1} times each
    row's fp16 scale, checked first (a plain function: the submission decoder copies it)."""
    out, cols = matrix_dims(shape)
    s = check_stream(streams, "s", out * cols, "int8")
    check_stream(streams, "scale", out, "float16")
    if s.size and not np.isin(s, (-1, 1)).all():
        raise FormatError("sign codes other than -1 and 1")
    signs = torch.from_numpy(np.ascontiguousarray(s).astype(np.float32)).reshape(out, cols)
    scale = torch.from_numpy(np.ascontiguousarray(streams["scale"]).astype(np.float32))
    return (signs * scale[:, None]).to(dtype).reshape(shape)


class Sign(Method):
    name = "sign"
    decode_fn = staticmethod(sign_dequantize)

    def quantize(self, name: str, w: torch.Tensor, ctx: QuantContext) -> Encoded:
        W = as_matrix(w.detach().to("cpu", torch.float32))  # [out, in]
        s = torch.where(W < 0, -1, 1).to(torch.int8)  # [out, in]
        scale = W.abs().mean(dim=1).to(torch.float16)  # [out]
        return Encoded(self.name, {}, {"s": s.numpy(), "scale": scale.numpy()})

    def dequantize(self, enc: Encoded, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return sign_dequantize(enc.method, enc.params, enc.streams, tuple(shape), dtype)


SUMMARY = "XNOR-Net binarization: the signs of each row and one fp16 scale, the row's mean |w|"


@pytest.fixture
def sign_registered(monkeypatch):
    """The registry as the built-ins leave it, plus ``sign``; restored afterwards, so no other test
    sees the method."""
    registry._load_builtins()
    for table in ("_METHOD_FAMILIES", "_CANDIDATES"):
        monkeypatch.setattr(registry, table, list(getattr(registry, table)))
    monkeypatch.setattr(registry, "_METHOD_CACHE", dict(registry._METHOD_CACHE))
    registry.register_method("sign", lambda m: Sign(), SUMMARY)  # the one registration line


@pytest.fixture
def sign_with_candidates(monkeypatch):
    """As ``sign_registered``, but the one line also names the tensors the solver may offer it for."""
    registry._load_builtins()
    for table in ("_METHOD_FAMILIES", "_CANDIDATES"):
        monkeypatch.setattr(registry, table, list(getattr(registry, table)))
    monkeypatch.setattr(registry, "_METHOD_CACHE", dict(registry._METHOD_CACHE))
    registry.register_method("sign", lambda m: Sign(), SUMMARY, candidates=lambda k: ["sign"] if k.is_matrix else [])


def _state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # w: over the 65,536 elements pack keeps as floats, so it gets the default method; b: kept as fp16
    return {"w": torch.randn(320, 256, generator=g) * 0.05, "b": torch.randn(16, generator=g)}


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def test_a_new_method_packs_and_unpacks(sign_registered):
    sd = _state_dict()
    data = pgcompress.pack(sd, method="sign")
    tensors = {t["name"]: t["method"] for t in pgcompress.read_header(data)["tensors"]}
    assert tensors == {"w": "sign", "b": "fp16"}
    got = pgcompress.unpack(data)
    w = sd["w"].double()
    # independently of the class: every entry keeps its weight's sign, and a row's magnitudes are one
    # value, the row's mean |w| rounded to fp16
    assert torch.equal(got["w"] < 0, sd["w"] < 0)
    mags = got["w"].abs().double()
    assert torch.equal(mags, mags[:, :1].expand_as(mags))
    want = torch.from_numpy(w.abs().mean(dim=1).numpy().astype(np.float16).astype(np.float64))
    assert torch.allclose(mags[:, 0], want, rtol=2e-3, atol=0)
    assert torch.equal(_bits(got["b"]), _bits(sd["b"].half().float()))
    same = [pgcompress.unpack(data, device="cpu"), pgcompress.quantize(sd, "sign")]
    for other in same:
        assert all(torch.equal(_bits(other[k]), _bits(got[k])) for k in sd)


def test_the_submission_decoder_carries_it(sign_registered):
    from pgcompress.submission.decoder import build_decoder

    sd = _state_dict(1)
    data = pgcompress.pack(sd, method="sign", submittable=True)
    ns: dict = {}
    exec(compile(build_decoder(data, minify=False), "decode_artifact.py", "exec"), ns)
    got, want = ns["decode"](data), pgcompress.unpack(data)
    assert set(got) == set(want) and all(torch.equal(_bits(got[k]), _bits(want[k])) for k in sd)


def test_a_bad_sign_stream_is_a_format_error(sign_registered):
    enc = registry.get_method("sign").quantize("w", _state_dict()["w"], QuantContext())
    enc.streams["s"][0, 0] = 3
    with pytest.raises(FormatError, match="sign codes"):
        registry.get_method("sign").dequantize(enc, (320, 256), torch.float32)


def test_pgc_methods_lists_it(sign_registered, capsys):
    code, out, _ = run_main(capsys, "methods")
    assert code == 0
    line = [ln for ln in out.splitlines() if ln.startswith("sign ")]
    assert len(line) == 1 and SUMMARY in line[0] and "e.g. sign" in line[0]
    assert registry.method_families()[-1].example == "sign"


def test_callers_ask_the_method_not_its_name(sign_registered):
    """What it declares (nothing: no grid, no LQER, no weight-only qparams, no Hessians) is what the
    callers act on: QAT refuses it as unsupported, lqer_targets offers it no correction, pack
    calibrates nothing for it."""
    from pgcompress.qat import fake_quant
    from pgcompress.quant.quantize import context_for, lqer_targets

    m = registry.get_method("sign")
    assert (m.grid, m.lqer_rank, m.row_qparams, m.wants_hessians) == (None, None, None, False)
    sd = _state_dict()
    with pytest.raises(MethodError, match="QAT supports"):
        fake_quant(sd["w"], "sign")
    X = torch.randn(64, 256, generator=torch.Generator().manual_seed(2))
    assert lqer_targets(sd, "sign", {"w": X.T @ X}) == []
    assert lqer_targets(sd, "int3-rtn", {"w": X.T @ X}) == ["w"]  # a grid method is offered one
    assert context_for(sd, "sign", {"w": X.T @ X}).hessians == {}


def test_the_solver_offers_it_only_with_candidates(sign_registered):
    from pgcompress.budget.table import tensor_kind

    kind = tensor_kind("w", _state_dict(3)["w"], QuantContext())
    assert "sign" not in registry.candidate_methods(kind)


def test_the_solver_offers_it_when_its_one_line_names_candidates(sign_with_candidates):
    from pgcompress.budget import pack_to_budget, prepare
    from pgcompress.budget.accounting import Accounting
    from pgcompress.budget.table import tensor_kind

    sd = _state_dict(3)
    kind = tensor_kind("w", sd["w"], QuantContext())
    assert "sign" in registry.candidate_methods(kind)
    prep = prepare(sd, methods=["sign", "int8-ref", "fp16", "raw"])
    assert "sign" in [c.method for c in prep.table.rows[0].all]
    uniform = pgcompress.pack(sd, method="sign", submittable=True)
    budget = len(uniform) + Accounting().count(uniform).code_bytes + 2_000  # int8-ref's 80 KB do not fit
    sol = pack_to_budget(sd, budget, prepared=prep)
    assert {t.name: t.method for t in sol.tensors}["w"] == "sign" and sol.total_bytes < budget
    assert torch.equal(pgcompress.unpack(sol.data)["w"], pgcompress.unpack(uniform)["w"])
