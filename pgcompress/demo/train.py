"""Train a small reference-architecture model on CPU for a fixed time (or step count).

Plain AdamW in fp32 (CPU bf16 autocast is no faster for training at this size), reference-style
init, warmup then a linear warmdown over the last 30% of the budget. Batches are drawn with a seeded generator, so
a step-bounded run is reproducible.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from pgcompress.eval.model import GPT, GPTConfig, apply_reference_dtypes


@dataclass
class TrainConfig:
    num_layers: int = 4
    model_dim: int = 192
    num_heads: int = 3  # head_dim 64, as the reference's 512 / 8
    num_kv_heads: int = 1
    mlp_mult: int = 2
    seq_len: int = 256
    batch_seqs: int = 16
    lr: float = 3e-3
    warmup_steps: int = 20
    warmdown_frac: float = 0.3
    train_seconds: float = 60.0
    train_steps: int | None = None  # set for an exactly reproducible run (overrides train_seconds)
    seed: int = 1337

    def model_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, num_layers=self.num_layers, model_dim=self.model_dim,
                         num_heads=self.num_heads, num_kv_heads=self.num_kv_heads,
                         mlp_hidden=self.mlp_mult * self.model_dim)


@dataclass
class TrainStats:
    steps: int
    seconds: float
    tokens: int
    final_loss: float  # EMA of the training loss


def _lr_scale(cfg: TrainConfig, step: int, progress: float) -> float:
    warm = min(1.0, (step + 1) / cfg.warmup_steps)
    down = min(1.0, (1.0 - progress) / cfg.warmdown_frac) if cfg.warmdown_frac > 0 else 1.0
    return warm * max(down, 0.0)


def train_model(train_tokens: np.ndarray, vocab_size: int, cfg: TrainConfig,
                log=None) -> tuple[dict[str, torch.Tensor], TrainStats]:
    """train_tokens: [n] uint16 -> (state dict with the reference's saved dtypes, stats)."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = GPT(cfg.model_config(vocab_size))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    data = torch.from_numpy(train_tokens.astype(np.int64))
    span = cfg.seq_len + 1
    if data.numel() <= span:
        raise ValueError(f"training data has {data.numel()} tokens, need more than {span}")
    offsets = torch.arange(span)
    t0, step, ema = time.perf_counter(), 0, None
    model.train()
    while True:
        elapsed = time.perf_counter() - t0
        if cfg.train_steps is not None:
            progress = step / cfg.train_steps
        else:
            progress = elapsed / cfg.train_seconds
        if progress >= 1.0:
            break
        for group in opt.param_groups:
            group["lr"] = cfg.lr * _lr_scale(cfg, step, progress)
        starts = torch.randint(0, data.numel() - span, (cfg.batch_seqs,), generator=gen)
        batch = data[starts[:, None] + offsets]  # [B, L + 1]
        loss = model(batch[:, :-1], batch[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        step += 1
        if log and step % 50 == 0:
            log(f"train step {step} loss {ema:.3f} ({time.perf_counter() - t0:.0f}s)")
    seconds = time.perf_counter() - t0
    # Saved like the reference's final_model.pt: bf16 embedding, fp32 linear and control tensors.
    apply_reference_dtypes(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, TrainStats(step, seconds, step * cfg.batch_seqs * cfg.seq_len, float(ema or 0.0))
