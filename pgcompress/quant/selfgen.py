"""Self-generated calibration text: the model samples sequences from BOS (no data needed, so legal
at eval time in the challenge). Tokens: [n, seq_len] int64, the first of each row BOS.

Two samplers, because what a step costs depends on what we know of the model:

- The built-in reference GPT samples with a KV cache (``GPT.kv_caches`` and ``GPT.forward_logits(ids, caches, pos)``): a step is one token's
  forward, n x seq_len token-forwards in all.
- A user's model (``--model-code``) is arbitrary torch code. A generic KV cache is impossible
  without knowing its internals: positions come from the input's length (rotary tables, a
  position restart at each BOS), and records mix positions outside attention too (token-shift /
  smear gates, bigram hashes), and the --model-code contract (docs/MODEL_CODE.md) has no
  incremental-decoding hook to call. Re-running the whole prefix at every token (``window=None``,
  the way before this module) costs seq_len^2 / 2 token-forwards a sequence. So each token is drawn given the last ``window`` tokens (default 128), all the sequences of a
  batch in one forward: seq_len x window token-forwards a sequence, linear in seq_len.

  What the window changes: every token at a position below ``window`` is exactly the full-prefix
  sampler's (the same forward of the same tokens, the same generator draws in the same order);
  later tokens are drawn from the model given its last ``window`` tokens, seen from position 0.
  That is how training batches are cut from the token stream (anywhere in a document), so the
  model is on familiar ground. The Hessians are still collected over whole seq_len sequences;
  bench/selfgen_time.py measures how far they move from full-prefix sampling, against how far
  two seeds of full-prefix sampling are apart.

The ETA: a windowed step's cost grows with its context until the window is full (a full-prefix
one's forever), so a constant-rate ETA reads low; but on a loaded CPU a step's fixed costs can
dominate. So the progress counter is given the token-forwards of every step (``work_curve``) and
fits seconds = a x steps + b x token-forwards to the steps timed so far (``progress.EtaFit``).
Before sampling, ``StepCost`` (the same a + b x context, fitted from a few timed forwards by
``probe_cost``) gives the estimate the log line prints and sizes the default: ``fit_count`` keeps
the largest of n, n/2, ... (not below MIN_SELFGEN) whose estimate fits a time target.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from pgcompress.model.calls import next_token_logits
from pgcompress.progress import progress_counter

BOS_ID = 1
DEFAULT_WINDOW = 128  # tokens of context a user model's sampler re-runs at each step
MIN_SELFGEN = 4  # a machine-sized default never goes below this many sequences


@dataclass(frozen=True)
class StepCost:
    """Seconds of one sampling step, per sequence: ``a + b * context``."""

    a: float = 0.0
    b: float = 1.0

    def seconds(self, n_seqs: int, contexts: list[int]) -> float:
        return n_seqs * sum(self.a + self.b * c for c in contexts)


def context_lengths(seq_len: int, window: int | None) -> list[int]:
    """Tokens each of the seq_len - 1 sampling steps runs (step p draws token p + 1)."""
    return [p + 1 if window is None else min(p + 1, window) for p in range(seq_len - 1)]


def work_curve(contexts: list[int], n_seqs: int, batch_seqs: int) -> Callable[[int], float]:
    """tokens sampled -> token-forwards run to sample them, in the sampler's order (batch by batch,
    a step of B tokens at a time), as ``progress_counter``'s ``work``."""
    tokens, forwards = [0], [0]
    for b0 in range(0, n_seqs, batch_seqs):
        B = min(batch_seqs, n_seqs - b0)
        for c in contexts:
            tokens.append(tokens[-1] + B)
            forwards.append(forwards[-1] + B * c)
    return lambda n: float(forwards[bisect_right(tokens, n) - 1])


def fit_count(cost: StepCost, n_max: int, contexts: list[int], target_s: float) -> int:
    """The largest of n_max, n_max // 2, ... whose estimated time fits target_s (at least
    min(n_max, MIN_SELFGEN): a count a Hessian can still be built from)."""
    n, floor = n_max, min(n_max, MIN_SELFGEN)
    while n > floor and cost.seconds(n, contexts) > target_s:
        n = max(floor, n // 2)
    return n


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def probe_cost(model: nn.Module, batch: int, max_context: int, bos: int = BOS_ID) -> StepCost:
    """Fit ``StepCost`` from timed forwards of [batch, L] tokens at L = max_context and max_context / 8
    (best of two each, after one warm-up forward)."""
    device = next(model.parameters()).device

    def timed(L: int) -> float:
        best = float("inf")
        for _ in range(2):
            toks = torch.full((batch, L), bos, dtype=torch.long, device=device)
            _sync(device)
            t0 = time.perf_counter()
            next_token_logits(model, toks)
            _sync(device)
            best = min(best, time.perf_counter() - t0)
        return best

    next_token_logits(model, torch.full((batch, max_context), bos, dtype=torch.long, device=device))
    short = max(1, max_context // 8)
    t_long = timed(max_context)
    if short == max_context:
        return StepCost(0.0, t_long / max_context / batch)
    t_short = timed(short)
    b = max(t_long - t_short, 0.0) / (max_context - short)
    a = max(t_short - b * short, 0.0)
    return StepCost(a / batch, b / batch) if a + b > 0 else StepCost()


@torch.no_grad()
def selfgen_tokens(model: nn.Module, n_seqs: int, seq_len: int, temperature: float = 1.0, seed: int = 1337,
                   batch_seqs: int = 64, bos: int = BOS_ID, progress: bool = False,
                   window: int | None = DEFAULT_WINDOW) -> torch.Tensor:
    """Sample n_seqs sequences of seq_len tokens (the first is BOS): [n, seq_len] int64.

    window: the context a user's model is re-run on at each step (None: the whole prefix, the
    quadratic reference); the built-in GPT samples from its whole prefix with a KV cache whatever it
    is. The progress counter counts sampled tokens (n_seqs * (seq_len - 1)) and advances at every
    position; for a user's model it is also given the token-forwards each step runs, so that its
    ETA fits a cost per step plus a cost per token of context to the steps timed so far."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    cached = is_reference_gpt(model)
    contexts = context_lengths(seq_len, None if cached else window)
    work = None if cached else work_curve(contexts, n_seqs, batch_seqs)  # cached steps cost alike
    out = []
    with progress_counter("self-generate", n_seqs * (seq_len - 1), unit="tok", enabled=progress, work=work) as bar:
        for b0 in range(0, n_seqs, batch_seqs):
            B = min(batch_seqs, n_seqs - b0)
            toks = torch.full((B, seq_len), bos, dtype=torch.long, device=device)
            caches = model.kv_caches(B, seq_len) if cached else None
            for pos in range(seq_len - 1):
                if caches is not None:
                    logits = model.forward_logits(toks[:, pos:pos + 1], caches, pos)
                else:
                    logits = next_token_logits(model, toks[:, pos + 1 - contexts[pos]:pos + 1])
                probs = torch.softmax(logits.float() / temperature, dim=-1)
                toks[:, pos + 1] = torch.multinomial(probs, 1, generator=gen)[:, 0]
                bar.update(B)
            out.append(toks.cpu())
    return torch.cat(out)


def is_reference_gpt(model: nn.Module) -> bool:
    return all(hasattr(model, a) for a in ("tok_emb", "blocks", "skip_weights", "num_encoder", "cfg"))
