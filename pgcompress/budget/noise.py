"""The eval's own resolution, measured: how far apart two gaps must be before the eval orders them.

The reference eval runs in bf16, so any change to the weights moves the roundings of the
activations and with them the loss, by an amount no proxy predicts and no larger eval removes
(on the shared checkpoint the spread was the same on 65,536 and on 131,072 tokens:
bench/results/budget.md). ``nudged_copies`` makes copies of a checkpoint with every float matrix
multiplied by (1 + rel * N(0, 1)), a change whose true effect on the loss is negligible (~1e-6
nats a token by the K-FAC proxy at rel = 2^-12); evaluated exactly as the artifacts are, the spread
of their gaps to the raw checkpoint is the eval's noise, sigma. Two gaps differ beyond noise when
they differ by more than 2 sqrt(2) sigma (two standard deviations of a difference of two).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import torch

RELATIVE_NOISE = 2.0 ** -12


def nudged_copies(state_dict: dict[str, torch.Tensor], replicates: int, rel: float = RELATIVE_NOISE,
                  seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``replicates`` copies with every floating-point matrix (ndim >= 2) multiplied elementwise by
    1 + rel * N(0, 1), in its own dtype; everything else shared. Draws follow the dict's order:
    same checkpoint and seed -> same copies."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(replicates):
        copy = {}
        for k, v in state_dict.items():
            if v.is_floating_point() and v.ndim >= 2:
                copy[k] = (v.float() * (1 + rel * torch.randn(v.shape, generator=g))).to(v.dtype)
            else:
                copy[k] = v
        out.append(copy)
    return out


def noise_floor(state_dict: dict[str, torch.Tensor], raw_val_bpb: float, eval_opts, replicates: int,
                rel: float = RELATIVE_NOISE, seed: int = 0) -> NoiseFloor:
    """Evaluate ``replicates`` nudged copies with ``eval_opts`` (the options the artifacts were
    scored with, so the same tokens) against the raw checkpoint's val_bpb."""
    from pgcompress.eval.runner import run

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, copy in enumerate(nudged_copies(state_dict, replicates, rel, seed)):
            paths.append(Path(tmp) / f"nudged_{i}.pt")
            torch.save(copy, paths[-1])
        results = run(paths, replace(eval_opts, label=None))
    return NoiseFloor(replicates, rel, [r.val_bpb - raw_val_bpb for r in results])


@dataclass
class NoiseFloor:
    replicates: int
    relative_noise: float
    gaps: list[float]  # each nudged copy's val_bpb minus the raw checkpoint's

    @property
    def sigma(self) -> float:
        n = len(self.gaps)
        mean = sum(self.gaps) / n
        return math.sqrt(sum((g - mean) ** 2 for g in self.gaps) / (n - 1)) if n > 1 else float("nan")

    @property
    def resolution(self) -> float:
        """The smallest difference of two gaps this eval resolves: 2 sqrt(2) sigma."""
        return 2 * math.sqrt(2) * self.sigma

    def as_dict(self) -> dict:
        return {"replicates": self.replicates, "relative_noise": self.relative_noise, "gaps": self.gaps,
                "sigma": self.sigma, "resolution": self.resolution}


def inversions(gaps_by_budget: list[tuple[int, float]], resolution: float) -> list[dict]:
    """Budgets whose measured gap is above the previous (smaller) budget's: each with its rise and
    whether that rise is beyond the eval's resolution."""
    ordered = sorted(gaps_by_budget)
    out = []
    for (b0, g0), (b1, g1) in zip(ordered, ordered[1:]):
        if g1 > g0:
            out.append({"from": b0, "to": b1, "rise": g1 - g0, "beyond_noise": bool(g1 - g0 > resolution)})
    return out
