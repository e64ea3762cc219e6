"""What pgcompress asks of a model, built-in or the user's: losses and next-token logits.

- ``batch_loss``: the SUM of per-token cross-entropies of a batch (so per-token gradients carry no
  1/N). The reference GPT gives logits (``forward_logits``); any other model keeps Parameter
  Golf's contract ``model(input_ids, target_ids) -> mean loss``, scaled by the number of targets.
- ``sequence_losses``: the mean cross-entropy of each sequence, for the solver's loss probes.
- ``next_token_logits``: logits at the last position, for sampling calibration sequences. Models
  without ``forward_logits`` are run through their loss and the logits caught on their way into
  ``F.cross_entropy``.

Calls into a user's model run under ``user_code_errors``, so its exceptions name its file and line.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from pgcompress.errors import ModelError
from pgcompress.model.user_code import user_code_errors


def batch_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """inputs, targets [B, T] int64 -> summed cross-entropy over the B*T targets (0-d, fp32)."""
    with user_code_errors("the model's forward"):
        if hasattr(model, "forward_logits"):
            logits = model.forward_logits(inputs)
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="sum")
        return model(inputs, targets).float() * targets.numel()


@torch.no_grad()
def sequence_losses(model: nn.Module, tokens: torch.Tensor, batch_seqs: int = 4) -> list[float]:
    """tokens [n, L] -> mean cross-entropy of each sequence's L-1 targets (nats per token). Models
    without ``forward_logits`` give one mean per call, so they run a sequence at a time."""
    device = next(model.parameters()).device
    per = batch_seqs if hasattr(model, "forward_logits") else 1
    out: list[float] = []
    for i in range(0, tokens.shape[0], per):
        x = tokens[i:i + per].to(device)
        if per == 1:
            out.append(float(batch_loss(model, x[:, :-1], x[:, 1:])) / (x.shape[1] - 1))
            continue
        with user_code_errors("the model's forward"):
            logits = model.forward_logits(x[:, :-1]).float()
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none")
        out += ce.reshape(x.shape[0], -1).mean(1).tolist()
    return out


class _CatchCrossEntropy(TorchFunctionMode):
    """Keeps the first argument of the first F.cross_entropy call (the model's logits)."""

    def __init__(self):
        super().__init__()
        self.logits: torch.Tensor | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.cross_entropy and self.logits is None:
            self.logits = args[0]
        return func(*args, **(kwargs or {}))


def next_token_logits(model: nn.Module, toks: torch.Tensor) -> torch.Tensor:
    """toks [B, T] int64 -> logits [B, V] for the token after position T-1."""
    B, T = toks.shape
    with user_code_errors("the model's forward"):
        if hasattr(model, "forward_logits"):
            return model.forward_logits(toks).reshape(B, T, -1)[:, -1]
        with _CatchCrossEntropy() as catch:
            model(toks, torch.zeros_like(toks))
    if catch.logits is None or catch.logits.numel() % (B * T):
        raise ModelError("the model computes no F.cross_entropy over its logits, so it cannot sample calibration "
                         "sequences; use --calib-shards instead")
    return catch.logits.reshape(B, T, -1)[:, -1]
