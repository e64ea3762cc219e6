"""The built-in reference GPT (spec section 5), its config inferred from a state dict, and the
reference's dtype rules (spec section 8).

Written so that every floating-point op happens in the same order and dtype as the reference,
because "identical numbers" in bf16 depends on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from pgcompress.errors import ModelError

# Names the reference keeps in fp32 even in a bf16 model (and the int8 export keeps as fp32).
CONTROL_PATTERNS = (
    "attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix", "resid_mixes",
    "q_gain", "skip_weight", "skip_weights",
)


@dataclass
class GPTConfig:
    vocab_size: int = 1024
    num_layers: int = 9
    model_dim: int = 512
    num_heads: int = 8
    num_kv_heads: int = 4
    mlp_hidden: int = 1024  # mlp_mult * model_dim; stored as a width so any fc shape loads
    tie_embeddings: bool = True
    rope_base: float = 10000.0
    logit_softcap: float = 30.0
    qk_gain_init: float = 1.5
    tied_embed_init_std: float = 0.005


# The hint on errors of a state dict that is not the reference architecture (callers that give
# their own hint strip it: pgcompress.budget.prepare).
NOT_REFERENCE_HINT = " (try --model-code)"


def infer_config(state_dict: dict[str, torch.Tensor], **overrides) -> GPTConfig:
    """Read the architecture off the tensor shapes; ``overrides`` win (e.g. rope_base)."""

    def shape(key: str) -> tuple[int, ...]:
        if key not in state_dict:
            raise ModelError(f"state dict has no {key!r}: not the reference architecture{NOT_REFERENCE_HINT}")
        return tuple(state_dict[key].shape)

    vocab, dim = shape("tok_emb.weight")
    block_ids = {int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k))}
    if not block_ids:
        raise ModelError(f"state dict has no blocks.N.* tensors: not the reference architecture{NOT_REFERENCE_HINT}")
    (heads,) = shape("blocks.0.attn.q_gain")
    if heads <= 0 or dim % heads:
        raise ModelError(f"blocks.0.attn.q_gain has {heads} heads, which does not divide model_dim {dim}")
    head_dim = dim // heads
    kv_rows = shape("blocks.0.attn.c_k.weight")[0]
    if kv_rows % head_dim:
        raise ModelError(f"blocks.0.attn.c_k.weight has {kv_rows} rows, not a multiple of head_dim {head_dim}")
    cfg = GPTConfig(
        vocab_size=vocab,
        num_layers=max(block_ids) + 1,
        model_dim=dim,
        num_heads=heads,
        num_kv_heads=kv_rows // head_dim,
        mlp_hidden=shape("blocks.0.mlp.fc.weight")[0],
        tie_embeddings="lm_head.weight" not in state_dict,
    )
    known = {f.name for f in fields(GPTConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ModelError(f"unknown model config field(s) {sorted(unknown)}; known: {sorted(known)}")
    return replace(cfg, **overrides)


def parse_overrides(pairs: list[str]) -> dict:
    """``["rope_base=50000", "tie_embeddings=0"]`` -> typed GPTConfig overrides."""
    types = {f.name: f.type for f in fields(GPTConfig)}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types:
            raise ModelError(f"--model-config {pair!r}: expected KEY=VALUE with KEY one of {sorted(types)}")
        kind = types[key]
        try:
            if kind in ("bool", bool):
                out[key] = value.strip().lower() in ("1", "true", "yes")
            else:
                out[key] = (int if kind in ("int", int) else float)(value)
        except ValueError:
            raise ModelError(f"--model-config {pair!r}: {value!r} is not a valid {kind}") from None
    return out


KVCache = tuple[torch.Tensor, torch.Tensor]  # keys, values: [B, kv_heads, max_len, head_dim]


class CastedLinear(nn.Linear):
    """Keeps an fp32 weight but multiplies in the activation dtype (bf16 compute without autocast)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.to(x.dtype))


class Rotary(nn.Module):
    """cos/sin tables, cached per sequence length.

    ``inv_freq`` is a buffer on purpose: the reference converts the whole model with
    ``.bfloat16()``, which turns it (and so the positions and angles) into bf16; matching the
    reference's numbers needs the same coarse tables.
    """

    def __init__(self, head_dim: int, base: float):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cache: tuple[int, torch.device, torch.Tensor, torch.Tensor] | None = None

    def forward(self, seq_len: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cache is None or self._cache[0] != seq_len or self._cache[1] != device:
            pos = torch.arange(seq_len, device=device, dtype=self.inv_freq.dtype)
            angles = torch.outer(pos, self.inv_freq.to(device))  # [T, head_dim/2]
            self._cache = (seq_len, device, angles.cos()[None, None], angles.sin()[None, None])
        _, _, cos, sin = self._cache
        return cos.to(dtype), sin.to(dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on halves: x [B, H, T, D], cos/sin [1, 1, T, D/2]."""
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.num_heads, self.num_kv_heads = cfg.num_heads, cfg.num_kv_heads
        self.head_dim = cfg.model_dim // cfg.num_heads
        kv_dim = cfg.num_kv_heads * self.head_dim
        self.c_q = CastedLinear(cfg.model_dim, cfg.model_dim, bias=False)
        self.c_k = CastedLinear(cfg.model_dim, kv_dim, bias=False)
        self.c_v = CastedLinear(cfg.model_dim, kv_dim, bias=False)
        self.proj = CastedLinear(cfg.model_dim, cfg.model_dim, bias=False)
        self.q_gain = nn.Parameter(torch.full((cfg.num_heads,), cfg.qk_gain_init))
        self.rotary = Rotary(self.head_dim, cfg.rope_base)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, pos: int = 0) -> torch.Tensor:
        """x [B, T, C]. With ``cache`` (one token, T = 1, at position ``pos``): its keys and values
        go into the cache and it attends to every position up to it."""
        B, T, C = x.shape
        q = self.c_q(x).reshape(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, T, D]
        k = self.c_k(x).reshape(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, T, D]
        v = self.c_v(x).reshape(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q = F.rms_norm(q, (self.head_dim,))
        k = F.rms_norm(k, (self.head_dim,))
        if cache is None:
            cos, sin = self.rotary(T, x.device, q.dtype)
        else:
            cos, sin = self.rotary(cache[0].shape[2], x.device, q.dtype)
            cos, sin = cos[:, :, pos:pos + 1], sin[:, :, pos:pos + 1]
        q = rotate(q, cos, sin)
        k = rotate(k, cos, sin)
        q = q * self.q_gain.to(q.dtype)[None, :, None, None]
        gqa = self.num_kv_heads != self.num_heads
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:
            K, V = cache
            K[:, :, pos:pos + 1] = k
            V[:, :, pos:pos + 1] = v
            y = F.scaled_dot_product_attention(q, K[:, :, :pos + 1], V[:, :, :pos + 1], enable_gqa=gqa)
        return self.proj(y.transpose(1, 2).contiguous().reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = CastedLinear(cfg.model_dim, cfg.mlp_hidden, bias=False)
        self.proj = CastedLinear(cfg.mlp_hidden, cfg.model_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.relu(self.fc(x)).square())


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        dim = cfg.model_dim
        self.attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.attn_scale = nn.Parameter(torch.ones(dim))
        self.mlp_scale = nn.Parameter(torch.ones(dim))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))))  # [2, dim]

    def forward(self, x: torch.Tensor, x0: torch.Tensor, cache: KVCache | None = None, pos: int = 0) -> torch.Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0][None, None, :] * x + mix[1][None, None, :] * x0
        x = x + self.attn_scale.to(x.dtype)[None, None, :] * self.attn(F.rms_norm(x, (x.size(-1),)), cache, pos)
        x = x + self.mlp_scale.to(x.dtype)[None, None, :] * self.mlp(F.rms_norm(x, (x.size(-1),)))
        return x


class GPT(nn.Module):
    """U-net style stack: the first L//2 blocks push skips, the rest pop them (weighted) in reverse."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        if cfg.model_dim % cfg.num_heads or cfg.num_heads % cfg.num_kv_heads:
            raise ModelError(
                f"num_heads {cfg.num_heads} must divide model_dim {cfg.model_dim} "
                f"and be a multiple of num_kv_heads {cfg.num_kv_heads}"
            )
        if (cfg.model_dim // cfg.num_heads) % 2:
            raise ModelError(f"head_dim {cfg.model_dim // cfg.num_heads} must be even for RoPE")
        self.cfg = cfg
        self.num_encoder = cfg.num_layers // 2
        self.num_decoder = cfg.num_layers - self.num_encoder
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.model_dim)
        self.skip_weights = nn.Parameter(torch.ones(min(self.num_encoder, self.num_decoder), cfg.model_dim))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.lm_head = None if cfg.tie_embeddings else CastedLinear(cfg.model_dim, cfg.vocab_size, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        # Reference-style init (only matters for training, e.g. the demo): small tied embedding,
        # zeroed output projections so every block starts as the identity.
        if self.cfg.tie_embeddings:
            nn.init.normal_(self.tok_emb.weight, std=self.cfg.tied_embed_init_std)
        for block in self.blocks:
            nn.init.zeros_(block.attn.proj.weight)
            nn.init.zeros_(block.mlp.proj.weight)
        if self.lm_head is not None:
            nn.init.zeros_(self.lm_head.weight)

    def kv_caches(self, batch: int, max_len: int) -> list[KVCache]:
        """Empty key/value caches for decoding ``batch`` sequences of up to ``max_len`` tokens one
        token at a time (``forward_logits(ids, caches, pos)``)."""
        p = next(self.parameters())
        out = []
        for block in self.blocks:
            shape = (batch, block.attn.num_kv_heads, max_len, block.attn.head_dim)
            out.append((torch.zeros(shape, dtype=p.dtype, device=p.device),
                        torch.zeros(shape, dtype=p.dtype, device=p.device)))
        return out

    def forward_logits(self, input_ids: torch.Tensor, caches: list[KVCache] | None = None, pos: int = 0) -> torch.Tensor:
        """input_ids [B, T] int64 -> soft-capped logits [B*T, V] in the compute dtype. With ``caches``
        (``kv_caches``): one new token per sequence (T = 1) at position ``pos``, the ones before it
        read from the caches - the same arithmetic as the full forward's last position."""
        if caches is None:
            caches = [None] * len(self.blocks)
        x = F.rms_norm(self.tok_emb(input_ids), (self.cfg.model_dim,))
        x0 = x
        skips: list[torch.Tensor] = []
        for li, block in enumerate(self.blocks[: self.num_encoder]):
            x = block(x, x0, caches[li], pos)
            skips.append(x)
        for i, block in enumerate(self.blocks[self.num_encoder :]):
            if skips:
                x = x + self.skip_weights[i].to(x.dtype)[None, None, :] * skips.pop()
            x = block(x, x0, caches[self.num_encoder + i], pos)
        x = F.rms_norm(x, (x.size(-1),)).reshape(-1, x.size(-1))  # [B*T, C]
        logits = F.linear(x, self.tok_emb.weight) if self.lm_head is None else self.lm_head(x)  # [B*T, V]
        cap = self.cfg.logit_softcap
        return cap * torch.tanh(logits / cap)

    def forward(self, input_ids: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
        """Mean natural-log cross-entropy over all targets, computed in fp32 (the reference's interface)."""
        logits = self.forward_logits(input_ids)
        return F.cross_entropy(logits.float(), target_ids.reshape(-1), reduction="mean")


def apply_reference_dtypes(
    model: nn.Module, linear_cls: type = CastedLinear, control_patterns: tuple[str, ...] = CONTROL_PATTERNS
) -> nn.Module:
    """bf16 body, fp32 linear weights (cast at matmul), fp32 control and low-dim params."""
    model.bfloat16()
    for module in model.modules():
        if isinstance(module, linear_cls):
            module.float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if (p.ndim < 2 or any(s in name for s in control_patterns)) and p.dtype != torch.float32:
                p.data = p.data.float()
    return model


def load_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str = "state dict") -> None:
    """load_state_dict with every missing/extra/misshaped key reported as a ModelError.

    Values are copied into the model's own parameter dtypes, as the reference's load does.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    extra = sorted(set(state_dict) - set(expected))
    misshaped = [
        f"{k} {tuple(state_dict[k].shape)} (model wants {tuple(expected[k].shape)})"
        for k in sorted(set(expected) & set(state_dict))
        if tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {_few(missing)}")
    if extra:
        problems.append(f"unexpected {_few(extra)}")
    if misshaped:
        problems.append(f"misshaped {_few(misshaped)}")
    if problems:
        raise ModelError(f"{source} does not fit the model: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)


def _few(names: list[str], n: int = 4) -> str:
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def build_model(state_dict: dict[str, torch.Tensor], source: str = "state dict", **overrides) -> GPT:
    """The reference GPT for this state dict, with reference dtypes and the weights loaded."""
    model = GPT(infer_config(state_dict, **overrides))
    apply_reference_dtypes(model)
    load_strict(model, state_dict, source)
    return model.eval()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
