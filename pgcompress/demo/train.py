"""Train a small reference-architecture model on CPU for a fixed number of steps.

Plain AdamW in fp32 (CPU bf16 autocast is no faster for training at this size), reference-style
init, warmup then a linear warmdown over the last 30% of the steps. Batches are drawn with a
seeded generator and the step count, not the clock, ends training, so the weights are the same
however fast or loaded the machine is (given the same torch threads: ``pgcompress.demo.run``
fixes them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from pgcompress.errors import DataError
from pgcompress.model.gpt import GPT, GPTConfig, apply_reference_dtypes
from pgcompress.progress import progress_counter


@dataclass
class TrainConfig:
    num_layers: int = 4
    model_dim: int = 128
    num_heads: int = 2  # head_dim 64, as the reference's 512 / 8
    num_kv_heads: int = 1
    mlp_mult: int = 2
    seq_len: int = 256
    batch_seqs: int = 16
    lr: float = 3e-3
    warmup_steps: int = 20
    warmdown_frac: float = 0.3
    train_steps: int = 100  # ~55 s on one thread of a 2-core AMD EPYC (bench/results/demo_determinism.md)
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


def _lr_scale(cfg: TrainConfig, step: int) -> float:
    warm = min(1.0, (step + 1) / cfg.warmup_steps)
    done = step / cfg.train_steps
    down = min(1.0, (1.0 - done) / cfg.warmdown_frac) if cfg.warmdown_frac > 0 else 1.0
    return warm * max(down, 0.0)


def train_model(train_tokens: np.ndarray, vocab_size: int, cfg: TrainConfig,
                progress: bool = False) -> tuple[dict[str, torch.Tensor], TrainStats]:
    """train_tokens: [n] uint16 -> (state dict with the reference's saved dtypes, stats).
    progress: a bar (a terminal) or stamped lines with the ETA on stderr."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = GPT(cfg.model_config(vocab_size))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    data = torch.from_numpy(train_tokens.astype(np.int64))
    span = cfg.seq_len + 1
    if data.numel() <= span:
        raise DataError(f"training data has {data.numel()} tokens, need more than one sequence of {span}")
    offsets = torch.arange(span)
    t0, ema = time.perf_counter(), None
    model.train()
    with progress_counter("train", cfg.train_steps, unit="steps", enabled=progress) as bar:
        for step in range(cfg.train_steps):
            for group in opt.param_groups:
                group["lr"] = cfg.lr * _lr_scale(cfg, step)
            starts = torch.randint(0, data.numel() - span, (cfg.batch_seqs,), generator=gen)
            batch = data[starts[:, None] + offsets]  # [B, L + 1]
            loss = model(batch[:, :-1], batch[:, 1:])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
            bar.set_postfix_str(f"loss {ema:.3f}", refresh=False)
            bar.update(1)
    seconds = time.perf_counter() - t0
    # Saved like the reference's final_model.pt: bf16 embedding, fp32 linear and control tensors.
    apply_reference_dtypes(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    steps = cfg.train_steps
    return state, TrainStats(steps, seconds, steps * cfg.batch_seqs * cfg.seq_len, float(ema or 0.0))
