"""The validation loop (spec section 4): float64 sums of loss, tokens and bytes, all-reduced.

Two modes:
- standard (the challenge's number): non-overlapping windows of ``seq_len``;
- sliding window (``stride``): every target scored once with at least ``seq_len - stride``
  tokens of context (except in the first window). It gives lower bpb and is always labelled.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from pgcompress.errors import DataError, ModelError
from pgcompress.eval.byte_tables import ByteTables, loss_and_bpb
from pgcompress.progress import progress_bar

REFERENCE_MICRO_STEPS = 8  # the reference uses grad_accum = 8 // world_size, so 8 micro-steps in total


@dataclass
class LoopConfig:
    seq_len: int = 1024
    batch_tokens: int = 524_288  # VAL_BATCH_SIZE: tokens per step over all ranks and micro-steps
    stride: int | None = None  # sliding-window stride; None = the standard eval
    progress: bool = False


@dataclass
class LoopResult:
    val_loss: float
    val_bpb: float
    loss_sum: float  # all-reduced float64 sums
    token_count: float
    byte_count: float


def local_batch_seqs(batch_tokens: int, seq_len: int, world_size: int) -> int:
    """Sequences per forward on one rank, as the reference computes them.

    The reference only runs world sizes dividing 8 (grad_accum = 8 // W), so every rank takes
    batch_tokens // 8 tokens per forward whatever W is; other world sizes use grad_accum 1.
    """
    grad_accum = REFERENCE_MICRO_STEPS // world_size if REFERENCE_MICRO_STEPS % world_size == 0 else 1
    local_tokens = batch_tokens // (world_size * grad_accum)
    if local_tokens < seq_len:
        raise DataError(
            f"--batch-tokens {batch_tokens} gives {local_tokens} tokens per rank and step, less than "
            f"one sequence of {seq_len} (world size {world_size}); raise --batch-tokens"
        )
    return local_tokens // seq_len


def rank_slice(total: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, end) of the items rank r owns: the reference's contiguous split."""
    return total * rank // world_size, total * (rank + 1) // world_size


def sliding_windows(num_targets: int, seq_len: int, stride: int) -> list[tuple[int, int]]:
    """(window start, first scored offset in the window) covering every target exactly once.

    All windows have length seq_len (the last one is pulled back to end at the data's end) so
    they batch without padding.
    """
    if not 0 < stride <= seq_len:
        raise DataError(f"--stride must be in 1..{seq_len}, got {stride}")
    windows = [(0, 0)]
    scored_end = seq_len
    while scored_end < num_targets:
        start = min(scored_end + stride - seq_len, num_targets - seq_len)
        windows.append((start, scored_end - start))
        scored_end = start + seq_len
    return windows


def _kernels(device: torch.device):
    # On GPU the reference runs flash attention; keep cuDNN attention (preferred by recent torch)
    # out so the kernel choice, and with it the last digits, match.
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def evaluate(
    model: nn.Module,
    tokens: torch.Tensor,
    tables: ByteTables,
    cfg: LoopConfig,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
) -> LoopResult:
    """Score ``tokens`` ([usable + 1] ints) with ``model``; every rank returns the same all-reduced result."""
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, tokens, bytes
    tables = tables.to(device)
    model.eval()
    with torch.inference_mode(), _kernels(device):
        if cfg.stride is None:
            _standard(model, tokens, tables, cfg, device, rank, world_size, sums)
        else:
            _sliding(model, tokens, tables, cfg, device, rank, world_size, sums)
    if world_size > 1 and dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    loss_sum, token_count, byte_count = (float(v) for v in sums.tolist())
    val_loss, val_bpb = loss_and_bpb(loss_sum, token_count, byte_count)
    return LoopResult(val_loss, val_bpb, loss_sum, token_count, byte_count)


def _autocast(device: torch.device):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _standard(model, tokens, tables, cfg, device, rank, world_size, sums) -> None:
    L = cfg.seq_len
    batch = local_batch_seqs(cfg.batch_tokens, L, world_size)
    first, last = rank_slice((tokens.numel() - 1) // L, rank, world_size)
    for start in progress_bar(range(first, last, batch), "eval", enabled=cfg.progress, unit="batches"):
        end = min(start + batch, last)
        local = tokens[start * L : end * L + 1].to(device=device, dtype=torch.int64)
        x = local[:-1].reshape(-1, L)  # [B, L]
        y = local[1:].reshape(-1, L)
        with _autocast(device):
            mean_loss = model(x, y).detach()
        n = float(y.numel())
        # mean * count, not a per-token sum: the reference's accumulation, so sums agree bit for bit.
        sums[0] += mean_loss.to(torch.float64) * n
        sums[1] += n
        sums[2] += tables.count_bytes(x.reshape(-1), y.reshape(-1))


def _sliding(model, tokens, tables, cfg, device, rank, world_size, sums) -> None:
    if not hasattr(model, "forward_logits"):
        raise ModelError("sliding-window eval needs a model with forward_logits(input_ids); drop --stride")
    L = cfg.seq_len
    batch = local_batch_seqs(cfg.batch_tokens, L, world_size)
    windows = sliding_windows(tokens.numel() - 1, L, cfg.stride)
    first, last = rank_slice(len(windows), rank, world_size)
    offsets = torch.arange(L, device=device)
    for i in progress_bar(range(first, last, batch), "eval (sliding)", enabled=cfg.progress,
                               unit="batches"):
        chunk = windows[i : min(i + batch, last)]
        local = torch.stack([tokens[s : s + L + 1] for s, _ in chunk]).to(device=device, dtype=torch.int64)
        x, y = local[:, :-1], local[:, 1:]  # [B, L]
        with _autocast(device):
            logits = model.forward_logits(x)  # [B*L, V]
        nll = F.cross_entropy(logits.float(), y.reshape(-1), reduction="none").reshape(y.shape)
        scored = offsets[None, :] >= torch.tensor([o for _, o in chunk], device=device)[:, None]  # [B, L]
        sums[0] += nll[scored].to(torch.float64).sum()
        sums[1] += float(scored.sum())
        sums[2] += tables.count_bytes(x[scored], y[scored])
