"""One calibration pass -> the statistics a rate-distortion budget solver needs per tensor.

For a weight error E the solver predicts the loss increase from these (it does the arithmetic):

- a weight W used as a linear map y = x W^T: 0.5 * sum_r a[r] * E[r] @ (H / N) @ E[r], with the
  input Hessian H = sum_t x_t x_t^T over N tokens and the output sensitivity
  a[r] = mean_t (dL/dy_{t,r})^2, L the SUM of per-token cross-entropies of a batch;
- an embedding table looked up with F.embedding: 0.5 * sum(emb_sens * E^2), emb_sens[v, j] = the
  sum over tokens t reading row v of (dL/dout_{t,j})^2, divided by the backward tokens;
- any parameter: the diagonal Fisher grad_sq = mean over backward batches of (dL/dp)^2 / tokens.

Weights are found by what they are used for, not by name: a TorchFunctionMode intercepts
F.linear and F.embedding and maps the weight argument back to a parameter through the casts
(``.to``, ``.float()``, ...) and int indexing of a bank (``bank[i]`` -> key ``"bank[i]"``) that
produced it. Sequences [0, fisher_seqs) get forward+backward (gradient hooks on the intercepted
outputs), the rest forward only under no_grad.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from pgcompress.model.calls import batch_loss
from pgcompress.model.user_code import user_code_errors
from pgcompress.progress import progress_bar

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]  # (model, inputs, targets) -> sum

# Tensor methods whose result stands for the same weight as their input.
_CASTS = {torch.Tensor.to, torch.Tensor.float, torch.Tensor.bfloat16, torch.Tensor.half, torch.Tensor.double,
          torch.Tensor.type, torch.Tensor.contiguous}


@dataclass
class CalibStats:
    hessians: dict[str, torch.Tensor]  # key -> H [in, in] fp32 cpu (sum x x^T)
    tokens: dict[str, int]  # key -> tokens summed into H
    out_sens: dict[str, torch.Tensor]  # key -> a [out] fp32 cpu
    emb_sens: dict[str, torch.Tensor]  # param name -> [V, d] fp32 cpu
    grad_sq: dict[str, torch.Tensor]  # param name -> same shape as param, fp32 cpu
    fisher_tokens: int  # tokens in the backward batches
    source: str  # e.g. "64 x 1024 shard tokens, 16 with gradients"
    held_out: torch.Tensor | None = None  # [n, L] sequences not in the statistics (loss probes)


class _Sums:
    """float64 running sums on the activations' device."""

    def __init__(self):
        self.H: dict[str, torch.Tensor] = {}
        self.tokens: dict[str, int] = {}
        self.a: dict[str, torch.Tensor] = {}
        self.a_rows: dict[str, int] = {}
        self.emb: dict[str, torch.Tensor] = {}
        self.grad_sq: dict[str, torch.Tensor] = {}

    def add_hessian(self, key: str, xtx: torch.Tensor, rows: int) -> None:
        _add(self.H, key, xtx)
        self.tokens[key] = self.tokens.get(key, 0) + rows

    def add_out_grad(self, key: str, g: torch.Tensor) -> None:
        # g: [..., out] = dL/dy -> a_sum[key] += sum over tokens of g^2 ([out])
        g2 = g.detach().reshape(-1, g.shape[-1]).float()
        _add(self.a, key, g2.square().sum(0, dtype=torch.float64))
        self.a_rows[key] = self.a_rows.get(key, 0) + g2.shape[0]

    def add_emb_grad(self, key: str, ids: torch.Tensor, g: torch.Tensor, vocab: int) -> None:
        # ids: [...] int, g: [..., d] = dL/dout -> emb[key][v] += sum over tokens reading v of g^2
        d = g.shape[-1]
        if key not in self.emb:
            self.emb[key] = torch.zeros(vocab, d, dtype=torch.float64, device=g.device)
        self.emb[key].index_add_(0, ids.reshape(-1), g.detach().reshape(-1, d).double().square())

    def add_param_grads(self, model: nn.Module, n_tokens: int) -> None:
        for name, p in model.named_parameters():
            if p.grad is not None:
                _add(self.grad_sq, name, p.grad.detach().double().square() / n_tokens)
                p.grad = None


def _add(sums: dict[str, torch.Tensor], key: str, value: torch.Tensor) -> None:
    if key in sums:
        sums[key] += value
    else:
        sums[key] = value.clone()


class _StatsMode(TorchFunctionMode):
    """Intercepts F.linear / F.embedding on (casts and bank slices of) the model's parameters."""

    def __init__(self, model: nn.Module, sums: _Sums):
        super().__init__()
        self.sums = sums
        self.params = {id(p): (p, name, None) for name, p in model.named_parameters()}
        self.derived: dict[int, tuple[torch.Tensor, str, int | None]] = {}  # id -> (tensor kept alive, name, slice)
        self.param_ndim = {name: p.ndim for name, p in model.named_parameters()}
        self.last: tuple[torch.Tensor, torch.Tensor] | None = None  # (input, its x^T x)
        self.with_grads = False

    def new_batch(self, with_grads: bool) -> None:
        self.derived.clear()
        self.last = None
        self.with_grads = with_grads

    def _origin(self, t) -> tuple[str, int | None] | None:
        hit = self.derived.get(id(t)) or self.params.get(id(t))
        return None if hit is None or hit[0] is not t else hit[1:]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in _CASTS or func is torch.Tensor.__getitem__:
            self._track(func, args, out)
        elif func is F.linear:
            self._linear(_arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "weight"), out)
        elif func is F.embedding:
            self._embedding(_arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "weight"), out)
        return out

    def _track(self, func, args, out) -> None:
        if not isinstance(out, torch.Tensor) or out is args[0]:
            return
        origin = self._origin(args[0])
        if origin is None:
            return
        name, index = origin
        if func is torch.Tensor.__getitem__:
            i = args[1]
            if index is not None or type(i) is not int or self.param_ndim[name] < 3:
                return
            origin = (name, i % args[0].shape[0])
        self.derived[id(out)] = (out, *origin)

    def _key(self, w) -> str | None:
        origin = self._origin(w)
        if origin is None:
            return None
        name, index = origin
        return name if index is None else f"{name}[{index}]"

    def _linear(self, x: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> None:
        key = self._key(w)
        if key is None or w.ndim != 2:
            return
        # x: [..., in] -> H[key] += x^T x ([in, in]); the held reference to x makes identity
        # (not address) decide the reuse, so q/k/v reading one input share one product
        if self.last is not None and self.last[0] is x:
            xtx = self.last[1]
        else:
            x2 = x.detach().reshape(-1, x.shape[-1]).float()
            xtx = (x2.T @ x2).double()
            self.last = (x, xtx)
        self.sums.add_hessian(key, xtx, x.numel() // x.shape[-1])
        if self.with_grads and y.requires_grad:
            y.register_hook(lambda g, key=key: self.sums.add_out_grad(key, g))

    def _embedding(self, ids: torch.Tensor, w: torch.Tensor, out: torch.Tensor) -> None:
        key = self._key(w)
        if key is not None and self.with_grads and out.requires_grad:
            vocab = w.shape[0]
            out.register_hook(lambda g, key=key, ids=ids: self.sums.add_emb_grad(key, ids, g, vocab))


def _arg(args, kwargs, i: int, name: str):
    return args[i] if len(args) > i else kwargs[name]


FISHER_BATCH_SEQS = 2


def collect_stats(model: nn.Module, tokens: torch.Tensor, batch_seqs: int = 8, fisher_seqs: int = 16,
                  loss_fn: LossFn | None = None, progress: bool = False) -> CalibStats:
    """tokens [n, L] int64 -> CalibStats; sequences [0, fisher_seqs) also get a backward pass.

    Each batch's loss is ``loss_fn(model, x[:, :-1], x[:, 1:])`` (summed over targets), by default
    ``batch_loss``. Parameters get back their requires_grad flags, and no .grad, afterwards.
    """
    loss_fn = loss_fn or batch_loss
    n, L = tokens.shape
    n_fisher = max(0, min(fisher_seqs, n))
    device = next(model.parameters()).device
    # backward batches are smaller: autograd keeps every activation (8 x 1024 tokens of the 17M
    # reference model held ~6 GB); 2 sequences bound that, for the same per-token statistics
    back = max(1, min(batch_seqs, FISHER_BATCH_SEQS))
    batches = [(i, min(i + back, n_fisher), True) for i in range(0, n_fisher, back)]
    batches += [(i, min(i + batch_seqs, n), False) for i in range(n_fisher, n, batch_seqs)]
    sums = _Sums()
    mode = _StatsMode(model, sums)
    flags = {p: p.requires_grad for p in model.parameters()}
    fisher_tokens = 0
    try:
        for p in model.parameters():
            p.requires_grad_(True)
            p.grad = None
        for start, stop, with_grads in progress_bar(batches, "calibrate", enabled=progress):
            x = tokens[start:stop].to(device)
            inputs, targets = x[:, :-1], x[:, 1:]
            mode.new_batch(with_grads)
            with torch.set_grad_enabled(with_grads), user_code_errors("the loss"), mode:
                loss = loss_fn(model, inputs, targets)
            if with_grads:
                loss.backward()
                sums.add_param_grads(model, targets.numel())
                fisher_tokens += targets.numel()
        mode.new_batch(False)
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
            p.grad = None
    return _finish(sums, fisher_tokens, len([b for b in batches if b[2]]),
                   f"{n} x {L} tokens, {n_fisher} with gradients")


def _finish(sums: _Sums, fisher_tokens: int, fisher_batches: int, source: str) -> CalibStats:
    def cpu(t: torch.Tensor) -> torch.Tensor:
        return t.float().cpu()

    return CalibStats(
        hessians={k: cpu(v) for k, v in sums.H.items()},
        tokens=dict(sums.tokens),
        out_sens={k: cpu(v / sums.a_rows[k]) for k, v in sums.a.items()},
        emb_sens={k: cpu(v / fisher_tokens) for k, v in sums.emb.items()},
        grad_sq={k: cpu(v / fisher_batches) for k, v in sums.grad_sq.items()},
        fisher_tokens=fisher_tokens,
        source=source,
    )
