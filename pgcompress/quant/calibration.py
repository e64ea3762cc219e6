"""Calibration: token sequences (train shards, or sampled from the model itself) -> Hessians for
GPTQ/LQER, keyed by state-dict name.

- ``--calib-shards GLOB``: evenly spaced windows of ``seq_len`` tokens from the shards (challenge
  format), deterministic;
- ``--calib-selfgen N``: the model samples N sequences from BOS (no data needed, so legal at eval
  time in the challenge; ``selfgen.py``). The built-in reference GPT samples with a KV cache; a
  user's model re-runs a sliding window of its last ``selfgen_window`` tokens at each step, and
  with ``selfgen_target_s`` set (the CLI's default) N is cut to fit that many seconds here.

The model (``calibration_model``) is ``pgcompress.model.load_model``'s: the built-in reference GPT
or, with ``model_code``, the user's train_gpt.py model, built as ``pgc eval`` builds it (its
``prepare_eval`` hook included, so calibration runs the network the record evaluates); run in fp32.
A tied embedding gets the output head's Hessian (inputs = the final-normed hidden states).
``calibrate`` gives Hessians only; ``calibrate_stats`` the full ``CalibStats`` of ``calib_stats``
(Hessians, output sensitivities, Fisher) for the budget solver.
"""

from __future__ import annotations

import glob as globlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pgcompress.errors import DataError
from pgcompress.model import load_model
from pgcompress.progress import note
from pgcompress.quant.calib_stats import CalibStats, collect_stats
from pgcompress.quant.selfgen import BOS_ID  # noqa: F401  (calibration's sequences start with it)
from pgcompress.quant.selfgen import (DEFAULT_WINDOW, context_lengths, fit_count, is_reference_gpt, probe_cost,
                                      selfgen_tokens)

SELFGEN_BATCH = 64  # sequences sampled per forward
HELD_OUT_SEED = 7919  # added to the seed for held-out self-generated sequences


@dataclass
class CalibConfig:
    shards: str | None = None  # glob of train shards
    selfgen: int = 0  # sequences to sample from the model (used when shards is None)
    selfgen_window: int = DEFAULT_WINDOW  # context a user's model is re-run on per sampled token
    selfgen_target_s: float | None = None  # set: a user's model samples at most selfgen, fewer to fit this
    seqs: int = 64  # sequences taken from the shards
    seq_len: int = 1024
    batch_seqs: int = 8  # sequences per forward (memory: activations of batch_seqs * seq_len tokens)
    temperature: float = 1.0
    seed: int = 1337
    device: str = "cpu"
    progress: bool = False
    model_code: str | None = None  # a user's train_gpt.py; None = the built-in reference GPT


def calibration_model(state_dict: dict[str, torch.Tensor], device: str = "cpu",
                      model_code: str | Path | None = None) -> nn.Module:
    """``load_model``'s model for this state dict (eval mode) in fp32 (statistics want full precision)
    on ``device``."""
    model, _ = load_model(state_dict, model_code)
    return model.float().to(device)


def shard_tokens(pattern: str, n_seqs: int, seq_len: int, between: int = 0) -> torch.Tensor:
    """n_seqs evenly spaced windows from the concatenated shards (sorted): [n, seq_len] int64.
    Shards are memory-mapped: only the windows are read, whatever the size of the glob.

    between > 0: instead, that many windows starting midway between consecutive ones of those
    n_seqs (evenly chosen): held out from them where the shards hold over 2 windows per sequence."""
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
    if between:
        mids = (starts[:-1] + starts[1:]) // 2 if n_seqs > 1 else starts
        starts = mids[np.linspace(0, len(mids) - 1, num=between).round().astype(np.int64)]
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


def collect_hessians(model: nn.Module, tokens: torch.Tensor, batch_seqs: int = 8,
                     progress: bool = False) -> dict[str, torch.Tensor]:
    """tokens [n, L] -> {param name: H [in, in] fp32}: one forward per batch, every layer at once,
    every position of ``tokens`` an input (the statistics collector with no backward pass, fed
    ``tokens`` plus a placeholder last column that is only ever a target)."""
    padded = torch.cat([tokens, tokens[:, -1:]], dim=1)
    return collect_stats(model, padded, batch_seqs, fisher_seqs=0, progress=progress).hessians


def calibration_tokens(model: nn.Module, cfg: CalibConfig) -> torch.Tensor:
    if cfg.shards:
        return shard_tokens(cfg.shards, cfg.seqs, cfg.seq_len)
    if cfg.selfgen > 0 and is_reference_gpt(model):  # KV-cached: n x seq_len token steps
        return selfgen_tokens(model, cfg.selfgen, cfg.seq_len, cfg.temperature, cfg.seed, SELFGEN_BATCH,
                              progress=cfg.progress)
    if cfg.selfgen > 0:
        return _user_selfgen(model, cfg)
    raise DataError("calibration needs --calib-shards GLOB or --calib-selfgen N")


def _user_selfgen(model: nn.Module, cfg: CalibConfig) -> torch.Tensor:
    """A user's model samples through a sliding window; its cost is probed (for the log line's
    estimate and, with selfgen_target_s, the count) only where someone reads it or a count depends on it."""
    n = cfg.selfgen
    contexts = context_lengths(cfg.seq_len, cfg.selfgen_window)
    if cfg.progress or cfg.selfgen_target_s is not None:
        cost = probe_cost(model, min(n, SELFGEN_BATCH), max(contexts))
        if cfg.selfgen_target_s is not None:
            n = fit_count(cost, n, contexts, cfg.selfgen_target_s)
        target = None if cfg.selfgen_target_s is None else _duration(cfg.selfgen_target_s)
        sized = "" if target is None else f" (within the default's ~{target})" if n == cfg.selfgen else \
            f" ({cfg.selfgen} cut to {n} to fit ~{target}; --calib-selfgen N chooses)"
        estimate = _duration(cost.seconds(n, contexts))
        note(f"self-generate: {n} x {cfg.seq_len} tokens through the --model-code model, each drawn from a forward "
             f"of at most the {max(contexts)} before it; estimated {estimate} on this machine{sized}",
             enabled=cfg.progress)
    return selfgen_tokens(model, n, cfg.seq_len, cfg.temperature, cfg.seed, SELFGEN_BATCH, progress=cfg.progress,
                          window=cfg.selfgen_window)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def calibrate(state_dict: dict[str, torch.Tensor], cfg: CalibConfig) -> dict[str, torch.Tensor]:
    """State dict + calibration config -> Hessians by state-dict name (for QuantContext.hessians)."""
    model = calibration_model(state_dict, cfg.device, cfg.model_code)
    tokens = calibration_tokens(model, cfg)
    if cfg.model_code is None:
        return collect_hessians(model, tokens, cfg.batch_seqs, cfg.progress)
    # a user's model: every position but the last is an input, as in calibrate_stats (kept so:
    # its artifacts keep their bytes)
    return collect_stats(model, tokens, cfg.batch_seqs, fisher_seqs=0, progress=cfg.progress).hessians


def held_out_tokens(model: nn.Module, cfg: CalibConfig, n: int) -> torch.Tensor:
    """n sequences of the same kind as the calibration's, none of them among its sequences: shard
    windows between the calibration's, or sequences sampled from another seed."""
    if cfg.shards:
        return shard_tokens(cfg.shards, cfg.seqs, cfg.seq_len, between=n)
    return calibration_tokens(model, replace(cfg, selfgen=n, seed=cfg.seed + HELD_OUT_SEED, selfgen_target_s=None,
                                             progress=False))


def calibrate_stats(state_dict: dict[str, torch.Tensor], cfg: CalibConfig, fisher_seqs: int = 16,
                    held_out: int = 0) -> CalibStats:
    """State dict + calibration config -> CalibStats (the first fisher_seqs sequences get gradients);
    held_out > 0: also that many held-out sequences (``CalibStats.held_out``) for loss probes."""
    model = calibration_model(state_dict, cfg.device, cfg.model_code)
    tokens = calibration_tokens(model, cfg)
    stats = collect_stats(model, tokens, cfg.batch_seqs, fisher_seqs, progress=cfg.progress)
    n, L = tokens.shape
    origin = "shard" if cfg.shards else "self-generated"
    windowed = not cfg.shards and not is_reference_gpt(model) and L - 1 > cfg.selfgen_window
    drawn = f" (each drawn given at most the {cfg.selfgen_window} before it)" if windowed else ""
    stats.source = f"{n} x {L} {origin} tokens{drawn}, {min(fisher_seqs, n)} with gradients"
    if held_out:
        stats.held_out = held_out_tokens(model, cfg, held_out)
    return stats
