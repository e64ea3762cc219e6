"""Built-in reference GPT: config inference, dtype rules, strict loading, and the forward pass
against an independent plain-fp32 implementation written here; a user's GPT subclass through
--model-code, and load_model choosing between the two."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pgcompress.errors import ModelError
from pgcompress.model import load_model
from pgcompress.model.gpt import (
    GPT, GPTConfig, apply_reference_dtypes, build_model, count_params, infer_config, load_strict, parse_overrides,
)
from pgcompress.model.user_code import build_user_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CKPT = DATA / "checkpoints" / "ref_sp1024_9x512.pt"
SMALL = GPTConfig(vocab_size=64, num_layers=3, model_dim=32, num_heads=4, num_kv_heads=2, mlp_hidden=64)


def random_state_dict(cfg: GPTConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if p.ndim == 1 else 0.0))
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.skipif(not CKPT.exists(), reason="shared checkpoint not present")
def test_infer_reference_checkpoint():
    sd = torch.load(CKPT, weights_only=True, map_location="cpu")
    cfg = infer_config(sd)
    assert (cfg.vocab_size, cfg.num_layers, cfg.model_dim) == (1024, 9, 512)
    assert (cfg.num_heads, cfg.num_kv_heads, cfg.mlp_hidden, cfg.tie_embeddings) == (8, 4, 1024, True)
    model = build_model(sd)
    assert count_params(model) == 17_059_912  # the spec's baseline parameter count
    assert sd["skip_weights"].shape == (4, 512)


def test_reference_dtypes():
    model = apply_reference_dtypes(GPT(SMALL))
    assert model.tok_emb.weight.dtype == torch.bfloat16
    assert model.blocks[0].attn.c_q.weight.dtype == torch.float32
    assert model.blocks[0].mlp.fc.weight.dtype == torch.float32
    for name in ("attn_scale", "mlp_scale", "resid_mix"):
        assert getattr(model.blocks[1], name).dtype == torch.float32
    assert model.blocks[0].attn.q_gain.dtype == torch.float32 and model.skip_weights.dtype == torch.float32
    # model.bfloat16() also converts the rotary buffer, as in the reference
    assert model.blocks[0].attn.rotary.inv_freq.dtype == torch.bfloat16


def test_untied_and_overrides():
    cfg = GPTConfig(**{**SMALL.__dict__, "tie_embeddings": False})
    sd = random_state_dict(cfg)
    assert "lm_head.weight" in sd
    inferred = infer_config(sd, rope_base=500.0)
    assert not inferred.tie_embeddings and inferred.rope_base == 500.0
    assert parse_overrides(["rope_base=50000", "logit_softcap=15", "num_layers=4"]) == {
        "rope_base": 50000.0, "logit_softcap": 15.0, "num_layers": 4}
    with pytest.raises(ModelError, match="KEY=VALUE"):
        parse_overrides(["nonsense=1"])


@pytest.mark.parametrize("damage,match", [
    (lambda sd: sd.pop("blocks.1.attn.c_v.weight"), r"missing blocks\.1\.attn\.c_v\.weight"),
    (lambda sd: sd.__setitem__("blocks.0.extra", torch.zeros(3)), r"unexpected blocks\.0\.extra"),
    (lambda sd: sd.__setitem__("blocks.2.mlp.proj.weight", torch.zeros(32, 65)), r"misshaped blocks\.2\.mlp\.proj\.weight"),
])
def test_strict_loading(damage, match):
    sd = random_state_dict(SMALL)
    damage(sd)
    model = apply_reference_dtypes(GPT(SMALL))
    with pytest.raises(ModelError, match=match):
        load_strict(model, sd, "ckpt.pt")


def test_not_reference_architecture():
    with pytest.raises(ModelError, match="tok_emb.weight"):
        infer_config({"wte.weight": torch.zeros(4, 4)})


def _independent_loss(sd: dict[str, torch.Tensor], cfg: GPTConfig, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The architecture of spec section 5 in plain fp32 tensor math (explicit mask, softmax, GQA repeat)."""
    w = {k: v.float() for k, v in sd.items()}
    eps = torch.finfo(torch.float32).eps
    norm = lambda t: t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + eps)  # noqa: E731
    B, T = x.shape
    H, Hk, D = cfg.num_heads, cfg.num_kv_heads, cfg.model_dim // cfg.num_heads
    inv = 1.0 / (cfg.rope_base ** (torch.arange(0, D, 2).float() / D))
    ang = torch.arange(T).float()[:, None] * inv[None, :]  # [T, D/2]
    cos, sin = ang.cos(), ang.sin()

    def rope(t):  # [B, h, T, D]: rotate pairs (i, i + D/2)
        a, b = t[..., : D // 2], t[..., D // 2 :]
        return torch.cat([a * cos + b * sin, b * cos - a * sin], -1)

    h = norm(w["tok_emb.weight"][x])
    h0, skips = h, []
    n_enc = cfg.num_layers // 2
    for i in range(cfg.num_layers):
        p = f"blocks.{i}."
        if i >= n_enc and skips:
            h = h + w["skip_weights"][i - n_enc] * skips.pop()
        h = w[p + "resid_mix"][0] * h + w[p + "resid_mix"][1] * h0
        a = norm(h)
        q = (a @ w[p + "attn.c_q.weight"].T).view(B, T, H, D).transpose(1, 2)
        k = (a @ w[p + "attn.c_k.weight"].T).view(B, T, Hk, D).transpose(1, 2)
        v = (a @ w[p + "attn.c_v.weight"].T).view(B, T, Hk, D).transpose(1, 2)
        q = rope(norm(q)) * w[p + "attn.q_gain"][None, :, None, None]
        k = rope(norm(k)).repeat_interleave(H // Hk, dim=1)
        v = v.repeat_interleave(H // Hk, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")).softmax(-1)
        o = (att @ v).transpose(1, 2).reshape(B, T, -1) @ w[p + "attn.proj.weight"].T
        h = h + w[p + "attn_scale"] * o
        m = torch.relu(norm(h) @ w[p + "mlp.fc.weight"].T).square() @ w[p + "mlp.proj.weight"].T
        h = h + w[p + "mlp_scale"] * m
        if i < n_enc:
            skips.append(h)
    logits = norm(h) @ w["tok_emb.weight"].T
    logits = cfg.logit_softcap * torch.tanh(logits / cfg.logit_softcap)
    return F.cross_entropy(logits.reshape(-1, cfg.vocab_size), y.reshape(-1))


def test_forward_matches_independent_fp32():
    sd = random_state_dict(SMALL)
    model = GPT(SMALL)
    load_strict(model, sd)  # stays fp32: no reference dtypes, no autocast
    torch.manual_seed(1)
    x = torch.randint(0, 64, (3, 20))
    y = torch.randint(0, 64, (3, 20))
    with torch.no_grad():
        ours = model(x, y)
    assert abs(ours.item() - _independent_loss(sd, SMALL, x, y).item()) < 1e-5


USER_SCRIPT = '''
import os
from pgcompress.model.gpt import GPT as _Builtin, GPTConfig

class Hyperparameters:
    vocab_size = 64
    num_layers = 3
    model_dim = 32
    num_heads = 4
    num_kv_heads = 2
    mlp_mult = 2
    data_path = "unused"

class GPT(_Builtin):
    def __init__(self, vocab_size, num_layers, model_dim, num_heads, num_kv_heads, mlp_mult, logit_softcap=30.0):
        super().__init__(GPTConfig(vocab_size, num_layers, model_dim, num_heads, num_kv_heads,
                                   mlp_mult * model_dim, logit_softcap=logit_softcap))

def main():
    open(os.environ["PGC_MAIN_MARKER"], "w").write("main ran")

if __name__ == "__main__":
    main()
'''


def test_model_code_builds_users_gpt(tmp_path, monkeypatch):
    script = tmp_path / "train_gpt.py"
    script.write_text(USER_SCRIPT)
    monkeypatch.setenv("PGC_MAIN_MARKER", str(tmp_path / "marker"))
    sd = random_state_dict(SMALL)
    model, vocab = build_user_model(script, sd, "ckpt.pt")
    assert vocab == 64 and not (tmp_path / "marker").exists()
    assert model.tok_emb.weight.dtype == torch.bfloat16 and model.blocks[0].attn.c_k.weight.dtype == torch.float32
    builtin = build_model(sd)
    x = torch.randint(0, 64, (2, 16))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x, x).item() == builtin(x, x).item()
    sd.pop("blocks.0.mlp_scale")
    with pytest.raises(ModelError, match="missing blocks.0.mlp_scale"):
        build_user_model(script, sd, "ckpt.pt")


def test_model_code_errors(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import not_a_module_anywhere\n")
    with pytest.raises(ModelError, match="importing it failed"):
        build_user_model(bad, {}, "x")
    nogpt = tmp_path / "nogpt.py"
    nogpt.write_text("class Hyperparameters: pass\n")
    with pytest.raises(ModelError, match="defines no 'GPT'"):
        build_user_model(nogpt, {}, "x")


def test_load_model_builds_the_builtin_gpt_or_the_users(tmp_path):
    sd = random_state_dict(SMALL)
    model, vocab = load_model(sd, overrides={"rope_base": 500.0})
    assert type(model) is GPT and vocab == 64 and model.cfg.rope_base == 500.0 and not model.training
    script = tmp_path / "train_gpt.py"
    script.write_text(USER_SCRIPT)
    user, vocab = load_model(sd, str(script))
    assert type(user) is not GPT and isinstance(user, GPT) and vocab == 64 and not user.training
