"""Calibration: token sequences (train shards, or sampled from the model itself) -> Hessians for
GPTQ/LQER, keyed by state-dict name.

- ``--calib-shards GLOB``: evenly spaced windows of ``seq_len`` tokens from the shards (challenge
  format), deterministic;
- ``--calib-selfgen N``: the model samples N sequences from BOS (no data needed, so legal at eval
  time in the challenge). The built-in reference GPT samples with a KV cache; any other model by
  re-running the full prefix.

The model is the eval subsystem's built-in reference GPT (or, with ``model_code``, the user's
train_gpt.py model), run in fp32. A tied embedding gets the output head's Hessian (inputs = the
final-normed hidden states). ``calibrate`` gives Hessians only; ``calibrate_stats`` the full
``CalibStats`` of ``calib_stats`` (Hessians, output sensitivities, Fisher) for the budget solver.
"""

from __future__ import annotations

import glob as globlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pgcompress.errors import DataError
from pgcompress.progress import progress_bar, progress_counter
from pgcompress.quant import calib_model
from pgcompress.quant.calib_stats import CalibStats, collect_stats
from pgcompress.quant.hessians import HessianCollector

BOS_ID = 1


@dataclass
class CalibConfig:
    shards: str | None = None  # glob of train shards
    selfgen: int = 0  # sequences to sample from the model (used when shards is None)
    seqs: int = 64  # sequences taken from the shards
    seq_len: int = 1024
    batch_seqs: int = 8  # sequences per forward (memory: activations of batch_seqs * seq_len tokens)
    temperature: float = 1.0
    seed: int = 1337
    device: str = "cpu"
    progress: bool = False
    model_code: str | None = None  # a user's train_gpt.py; None = the built-in reference GPT


def shard_tokens(pattern: str, n_seqs: int, seq_len: int) -> torch.Tensor:
    """n_seqs evenly spaced windows from the concatenated shards (sorted): [n, seq_len] int64.
    Shards are memory-mapped: only the windows are read, whatever the size of the glob."""
    from pgcompress.eval.shards import read_shard

    files = sorted(globlib.glob(pattern))
    if not files:
        raise DataError(f"--calib-shards {pattern!r} matches no file")
    maps = [read_shard(f, mmap=True) for f in files]
    ends = np.cumsum([m.size for m in maps])  # global end offset of each shard
    total = int(ends[-1])
    if total < seq_len:
        raise DataError(f"calibration shards hold {total} tokens, fewer than one sequence of {seq_len}")
    starts = np.linspace(0, total - seq_len, num=n_seqs).astype(np.int64)
    return torch.from_numpy(np.stack([_window(maps, ends, int(s), seq_len) for s in starts]))


def _window(maps: list[np.ndarray], ends: np.ndarray, start: int, length: int) -> np.ndarray:
    """Tokens [start, start + length) of the concatenation of ``maps`` (may span shards): int64."""
    parts, pos = [], start
    i = int(np.searchsorted(ends, pos, side="right"))
    while length > 0:
        base = int(ends[i - 1]) if i else 0
        take = min(length, int(ends[i]) - pos)
        parts.append(np.asarray(maps[i][pos - base:pos - base + take]).astype(np.int64))
        pos, length, i = pos + take, length - take, i + 1
    return np.concatenate(parts)


def tied_head_input(model: nn.Module) -> dict:
    """The tied output head as a virtual linear for HessianCollector, if ``model`` is the reference
    GPT with tied embeddings (its head input is rms_norm of the last block's output)."""
    if getattr(model, "lm_head", "absent") is not None or not hasattr(model, "blocks") or not hasattr(model, "tok_emb"):
        return {}
    return {"tok_emb.weight": (model.blocks[-1], lambda out: F.rms_norm(out, (out.shape[-1],)))}


@torch.no_grad()  # not inference_mode: cached rotary tables must stay usable by a later backward
def collect_hessians(model: nn.Module, tokens: torch.Tensor, batch_seqs: int = 8,
                     progress: bool = False) -> dict[str, torch.Tensor]:
    """tokens [n, L] -> {param name: H [in, in] fp32}: one forward per batch, every layer at once."""
    device = next(model.parameters()).device
    with HessianCollector(model, tied_head_input(model)) as hc:
        batches = range(0, tokens.shape[0], batch_seqs)
        for i in progress_bar(batches, "calibrate", enabled=progress):
            x = tokens[i:i + batch_seqs].to(device)
            _forward(model, x)
            hc.new_batch()
        return hc.hessians()


def _forward(model: nn.Module, x: torch.Tensor) -> None:
    if hasattr(model, "forward_logits"):
        model.forward_logits(x)
    else:
        model(x)


@torch.no_grad()
def selfgen_tokens(model: nn.Module, n_seqs: int, seq_len: int, temperature: float = 1.0, seed: int = 1337,
                   batch_seqs: int = 64, bos: int = BOS_ID, progress: bool = False) -> torch.Tensor:
    """Sample n_seqs sequences of seq_len tokens (the first is BOS): [n, seq_len] int64.

    The progress bar counts sampled tokens (n_seqs * (seq_len - 1)): one batch of sequences can
    take minutes, so it advances at every position, not once per batch."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    out = []
    with progress_counter("self-generate", n_seqs * (seq_len - 1), unit="tok", enabled=progress) as bar:
        for b0 in range(0, n_seqs, batch_seqs):
            B = min(batch_seqs, n_seqs - b0)
            toks = torch.full((B, seq_len), bos, dtype=torch.long, device=device)
            step = _cached_stepper(model, B, seq_len) if _is_reference_gpt(model) else None
            for pos in range(seq_len - 1):
                if step is not None:
                    logits = step(toks[:, pos], pos)
                else:
                    logits = calib_model.next_token_logits(model, toks[:, :pos + 1])
                probs = torch.softmax(logits.float() / temperature, dim=-1)
                toks[:, pos + 1] = torch.multinomial(probs, 1, generator=gen)[:, 0]
                bar.update(B)
            out.append(toks.cpu())
    return torch.cat(out)


def _is_reference_gpt(model: nn.Module) -> bool:
    return all(hasattr(model, a) for a in ("tok_emb", "blocks", "skip_weights", "num_encoder", "cfg"))


def _cached_stepper(model: nn.Module, B: int, max_len: int):
    """One-token decode of the reference GPT with a KV cache; mirrors GPT.forward_logits."""
    from pgcompress.eval.model import rotate

    cfg = model.cfg
    C = cfg.model_dim
    p = next(model.parameters())
    caches = []
    for block in model.blocks:
        a = block.attn
        shape = (B, a.num_kv_heads, max_len, a.head_dim)
        caches.append((torch.zeros(shape, dtype=p.dtype, device=p.device), torch.zeros(shape, dtype=p.dtype, device=p.device)))

    def attn_step(a, h, pos, cache):
        q = a.c_q(h).reshape(B, 1, a.num_heads, a.head_dim).transpose(1, 2)  # [B, H, 1, D]
        k = a.c_k(h).reshape(B, 1, a.num_kv_heads, a.head_dim).transpose(1, 2)
        v = a.c_v(h).reshape(B, 1, a.num_kv_heads, a.head_dim).transpose(1, 2)
        q = F.rms_norm(q, (a.head_dim,))
        k = F.rms_norm(k, (a.head_dim,))
        cos, sin = a.rotary(max_len, h.device, q.dtype)
        cos, sin = cos[:, :, pos:pos + 1], sin[:, :, pos:pos + 1]
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        q = q * a.q_gain.to(q.dtype)[None, :, None, None]
        K, V = cache
        K[:, :, pos:pos + 1] = k
        V[:, :, pos:pos + 1] = v
        y = F.scaled_dot_product_attention(q, K[:, :, :pos + 1], V[:, :, :pos + 1],
                                           enable_gqa=a.num_kv_heads != a.num_heads)
        return a.proj(y.transpose(1, 2).reshape(B, 1, C))

    def block_step(block, x, x0, pos, cache):
        mix = block.resid_mix.to(x.dtype)
        x = mix[0][None, None, :] * x + mix[1][None, None, :] * x0
        x = x + block.attn_scale.to(x.dtype)[None, None, :] * attn_step(block.attn, F.rms_norm(x, (C,)), pos, cache)
        return x + block.mlp_scale.to(x.dtype)[None, None, :] * block.mlp(F.rms_norm(x, (C,)))

    def step(tok: torch.Tensor, pos: int) -> torch.Tensor:
        # tok: [B] -> soft-capped logits [B, V]
        x = F.rms_norm(model.tok_emb(tok)[:, None, :], (C,))
        x0 = x
        skips = []
        n_enc = model.num_encoder
        for li, block in enumerate(model.blocks[:n_enc]):
            x = block_step(block, x, x0, pos, caches[li])
            skips.append(x)
        for i, block in enumerate(model.blocks[n_enc:]):
            if skips:
                x = x + model.skip_weights[i].to(x.dtype)[None, None, :] * skips.pop()
            x = block_step(block, x, x0, pos, caches[n_enc + i])
        x = F.rms_norm(x, (C,))[:, 0]
        logits = F.linear(x, model.tok_emb.weight) if model.lm_head is None else model.lm_head(x)
        cap = cfg.logit_softcap
        return cap * torch.tanh(logits / cap)

    return step


def calibration_model(state_dict: dict[str, torch.Tensor], device: str = "cpu") -> nn.Module:
    """The built-in reference GPT for this state dict, in fp32 (see ``calib_model.calibration_model``)."""
    return calib_model.calibration_model(state_dict, device)


def calibration_tokens(model: nn.Module, cfg: CalibConfig) -> torch.Tensor:
    if cfg.shards:
        return shard_tokens(cfg.shards, cfg.seqs, cfg.seq_len)
    if cfg.selfgen > 0:
        return selfgen_tokens(model, cfg.selfgen, cfg.seq_len, cfg.temperature, cfg.seed, progress=cfg.progress)
    raise DataError("calibration needs --calib-shards GLOB or --calib-selfgen N")


def calibrate(state_dict: dict[str, torch.Tensor], cfg: CalibConfig) -> dict[str, torch.Tensor]:
    """State dict + calibration config -> Hessians by state-dict name (for QuantContext.hessians)."""
    model = calib_model.calibration_model(state_dict, cfg.device, cfg.model_code)
    tokens = calibration_tokens(model, cfg)
    if cfg.model_code is None:
        return collect_hessians(model, tokens, cfg.batch_seqs, cfg.progress)
    # a user's model may use weights outside nn.Linear (banks): find them by use, not by module
    return collect_stats(model, tokens, cfg.batch_seqs, fisher_seqs=0, progress=cfg.progress).hessians


def calibrate_stats(state_dict: dict[str, torch.Tensor], cfg: CalibConfig, fisher_seqs: int = 16) -> CalibStats:
    """State dict + calibration config -> CalibStats (the first fisher_seqs sequences get gradients)."""
    model = calib_model.calibration_model(state_dict, cfg.device, cfg.model_code)
    tokens = calibration_tokens(model, cfg)
    stats = collect_stats(model, tokens, cfg.batch_seqs, fisher_seqs, progress=cfg.progress)
    n, L = tokens.shape
    origin = "shard" if cfg.shards else "self-generated"
    stats.source = f"{n} x {L} {origin} tokens, {min(fisher_seqs, n)} with gradients"
    return stats
