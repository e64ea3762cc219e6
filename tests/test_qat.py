"""QAT fake-quant == pack -> unpack, bit for bit, for each method family (eager and compiled)."""

from __future__ import annotations

import os

import pytest
import torch

import pgcompress
from conftest import reference_like_state_dict
from pgcompress.errors import MethodError
from pgcompress.model.gpt import build_model
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


def test_tied_embedding_is_fake_quantized_for_lookup_and_head():
    spec = "int6-rtn,tok_emb.weight=int8-ref"
    model = build_model(state_dict(seed=4))
    assert "tok_emb.weight" not in prepare_qat(build_model(state_dict(seed=4)), spec)  # opt-in
    plan = prepare_qat(model, spec, embeddings=True)
    assert plan["tok_emb.weight"] == "int8-ref" and model.lm_head is None  # tied: the head is tok_emb
    param = model.tok_emb._parameters["weight"]
    assert [p is param for p in model.parameters()].count(True) == 1  # the optimizer sees the parameter
    unpacked = pgcompress.unpack(pgcompress.pack(model.state_dict(), method=spec, codec="zlib"))
    assert torch.equal(bits(model.tok_emb.weight), bits(unpacked["tok_emb.weight"]))
    # the forward (lookup and head) equals the plain model holding the unpacked weights, and the
    # straight-through gradient reaching the parameter equals that model's gradient
    plain = build_model(unpacked)
    x = torch.randint(0, 1100, (2, 16), generator=torch.Generator().manual_seed(5))
    qat_logits, plain_logits = model.forward_logits(x), plain.forward_logits(x)
    assert torch.equal(qat_logits, plain_logits)
    g = torch.randn(qat_logits.shape, generator=torch.Generator().manual_seed(6))
    (qat_logits.float() * g).sum().backward()
    (plain_logits.float() * g).sum().backward()
    assert torch.allclose(param.grad.float(), plain.tok_emb.weight.grad.float(), rtol=1e-5, atol=1e-6)
    strip_qat(model)
    assert type(model.tok_emb) is torch.nn.Embedding and model.tok_emb.weight is param


@pytest.mark.parametrize("spec", ["int6-rtn", "int5-sdclip,tok_emb.weight=int8-sdclip-k20"])
def test_embeddings_opt_in_forward_equals_unpacked_model(spec):
    model = build_model(state_dict(seed=8))
    plan = prepare_qat(model, spec, embeddings=True)
    unpacked = pgcompress.unpack(pgcompress.pack(model.state_dict(), method=spec, codec="zlib"))
    modules = dict(model.named_modules())
    for key in plan:
        assert torch.equal(bits(modules[key[: -len(".weight")]].qat_weight()), bits(unpacked[key])), key
    x = torch.randint(0, 1100, (2, 16), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert torch.equal(model.forward_logits(x), build_model(unpacked).forward_logits(x))


def test_int8_ref_fake_quant_does_not_copy_to_the_cpu(monkeypatch):
    from pgcompress.quant.int8_ref import quantize_rows

    w = torch.randn(16, 300) * 0.02
    expected = (lambda q, s: q.float() * s.float()[:, None])(*quantize_rows(w))

    def no_copy(self, *a, **k):
        raise AssertionError("int8-ref fake-quant copied a tensor to the CPU")

    monkeypatch.setattr(torch.Tensor, "cpu", no_copy)
    assert torch.equal(fake_quant(w, "int8-ref"), expected)
