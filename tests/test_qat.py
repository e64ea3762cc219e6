"""QAT fake-quant == pack -> unpack, bit for bit, for each method family (eager and compiled)."""

from __future__ import annotations

import os

import pytest
import torch

import pgcompress
from conftest import reference_like_state_dict
from pgcompress.errors import MethodError
from pgcompress.eval.model import build_model
from pgcompress.qat import QATLinear, fake_quant, prepare_qat, strip_qat

SPECS = ["int6-rtn", "int5-clip", "int6-sdclip", "int4-pct-asym", "int4-rtn-g32-asym-bf16", "int3-sdclip-kauto",
         "int8-ref", "int6-sdclip,blocks.1.mlp.*=int5-clip-g64,blocks.*.attn.c_q.weight=bf16"]


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int16 if t.element_size() == 2 else torch.int32)


def state_dict(seed=0):
    # fc/proj (1088 x 64) and the embedding (1100 x 64) are above pack's keep-float threshold
    sd = reference_like_state_dict(seed=seed, dim=64, layers=2, vocab=1100, mlp_mult=17)
    for k, v in sd.items():
        if k.endswith("fc.weight"):
            v[3, :] = 0.0  # an all-zero row
    return sd


@pytest.mark.parametrize("spec", SPECS)
def test_fake_quant_equals_pack_unpack(spec):
    sd = state_dict()
    model = build_model(sd)
    plan = prepare_qat(model, spec)
    assert "blocks.0.mlp.fc.weight" in plan
    unpacked = pgcompress.unpack(pgcompress.pack(model.state_dict(), method=spec, codec="zlib"))
    modules = dict(model.named_modules())
    for key in plan:
        got = modules[key[: -len(".weight")]].qat_weight()
        assert torch.equal(bits(got), bits(unpacked[key])), key
    # and the whole forward equals the plain model holding the unpacked weights (the embedding is
    # not a Linear: QAT leaves it alone, so the plain model gets the original one)
    plain = build_model({**unpacked, "tok_emb.weight": model.state_dict()["tok_emb.weight"]})
    x = torch.randint(0, 1100, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model.forward_logits(x), plain.forward_logits(x))


def test_straight_through_gradient():
    w = (torch.randn(8, 64) * 0.1).requires_grad_()
    g = torch.randn(8, 64)
    (fake_quant(w, "int3-clip-g32") * g).sum().backward()
    assert torch.equal(w.grad, g)


def test_state_dict_is_unchanged_and_strip_restores():
    sd = state_dict()
    model = build_model(sd)
    keys = list(model.state_dict())
    prepare_qat(model, "int6-rtn")
    assert list(model.state_dict()) == keys
    assert any(isinstance(m, QATLinear) for m in model.modules())
    strip_qat(model)
    assert not any(isinstance(m, QATLinear) for m in model.modules())
    assert type(model.blocks[0].mlp.fc).__name__ == "CastedLinear"


@pytest.mark.parametrize("method", ["int6-gptq", "int6-rtn+lqer", "int6-foo"])
def test_post_training_methods_are_refused(method):
    with pytest.raises(MethodError):
        prepare_qat(build_model(state_dict()), f"int6-rtn,blocks.0.mlp.fc.weight={method}" if method != "int6-foo" else "int6-rtn")
        fake_quant(torch.randn(4, 32), method)


@pytest.mark.skipif(os.environ.get("PGC_SKIP_COMPILE") == "1", reason="PGC_SKIP_COMPILE=1")
def test_compiled_forward_is_bit_identical():
    torch._dynamo.reset()
    sd = state_dict(seed=3)
    model = build_model(sd)
    prepare_qat(model, "int5-sdclip,blocks.1.mlp.*=int4-rtn-g32-asym")
    x = torch.randint(0, 1100, (2, 16), generator=torch.Generator().manual_seed(2))
    fc = model.blocks[1].mlp.fc
    compiled_w = torch.compile(lambda: fc.qat_weight())()
    assert torch.equal(bits(compiled_w), bits(fc.qat_weight()))
    with torch.no_grad():
        eager = model.forward_logits(x)
        compiled = torch.compile(model.forward_logits)(x)
    unpacked = pgcompress.unpack(pgcompress.pack(model.state_dict(), method="int5-sdclip,blocks.1.mlp.*=int4-rtn-g32-asym",
                                                 codec="zlib"))
    assert torch.equal(bits(compiled_w), bits(unpacked["blocks.1.mlp.fc.weight"]))
    # the forward's other ops may be fused differently: the logits only need to be close
    assert torch.allclose(compiled, eager, atol=1e-2, rtol=1e-2)
