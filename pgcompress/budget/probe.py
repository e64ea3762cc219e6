"""Loss probes: each quantizer family's predicted damage checked against the model's real loss.

The K-FAC proxy (``distortion.py``) ranks one family's candidates well, but its scale differs
between families whose errors have different shapes. Measured on the shared checkpoint
(bench/results/waterfill_e2e.md): the val_bpb gap per predicted nat was 0.59-0.77 for artifacts
of per-row GPTQ grids and 1.66-2.48 for waterfilled ones - the proxy under-predicted waterfill's
damage ~3x against GPTQ's, held out or not (bench/results/wf_heldout.md), so the solver bought wf
rungs too low. The errors wf leaves sit in the inputs' low-variance directions, where the
Kronecker-factored form (gradient and input statistics taken as independent) misses most.

A probe quantizes every tensor of one group (lookup tables read by F.embedding; all other
matrices) with one family at the candidate nearest ``PROBE_BITS`` coded bits per weight, runs the
calibration model on held-out sequences (fp32, paired with the unquantized model on the same
tokens) and divides the loss increase by the proxy's prediction for those candidates. Each
family's candidates in that group are then scaled by its ratio over the reference family's (the
per-row integer grids the proxy was validated on), so only the scale between families moves.
A factor is applied only where it stands clear of 1 by ``MIN_SIGNAL`` jackknife standard errors
(leave one held-out sequence out); otherwise the family keeps its predicted scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from pgcompress.budget.table import CandidateTable, Candidate, pareto
from pgcompress.registry import get_method, method_family

PROBE_BITS = 3.0  # coded bits per weight of the probed candidates (the leaderboard stores ~3.5)
MIN_SIGNAL = 2.0  # a factor is applied where its log is this many jackknife standard errors from 0
FACTOR_RANGE = (1 / 100, 100.0)
LOOKUP, LINEAR = "lookup", "linear"

LossFn = Callable[[dict[str, torch.Tensor]], list[float]]  # state dict -> loss per held-out sequence


@dataclass
class Probe:
    family: str  # the family as ``pgc methods`` writes it
    group: str  # LOOKUP or LINEAR
    tensors: int
    predicted: float  # proxy's loss increase, nats per token
    measured: float  # mean loss increase on the held-out tokens, nats per token
    stderr: float  # its paired standard error
    diffs: list = field(default_factory=list, repr=False)  # loss increase per held-out sequence
    factor: float = 1.0  # applied to the family's distortions in this group (1: reference or unmeasured)
    reason: str = ""  # why the factor is 1, where it is


def family_of(method: str) -> str:
    return method_family(method).readable


def correct_families(table: CandidateTable, state_dict: dict[str, torch.Tensor], losses: LossFn,
                     groups: Callable[[str], str]) -> list[Probe]:
    """Probe every calibrated family (``needs_hessians``) in each group, scale their candidates'
    distortions by their measured ratio over the reference family's, and re-prune the fronts. A
    group with no reference family or nothing to compare with it is not probed (and the unquantized
    model runs only if some group is)."""
    base: list[float] | None = None
    probes: list[Probe] = []
    for group in (LOOKUP, LINEAR):
        rows = [r for r in table.rows if groups(r.name) == group]
        per_family: dict[str, dict[str, Candidate]] = {}
        for row in rows:
            for fam, cands in _calibrated(row.all).items():
                per_family.setdefault(fam, {})[row.name] = _nearest(cands, row.numel)
        ref = _reference(per_family)
        if ref is None or len(per_family) < 2:
            continue
        base = losses(state_dict) if base is None else base
        measured = {fam: _probe(fam, group, chosen, state_dict, losses, base) for fam, chosen in per_family.items()}
        r0 = measured[ref]
        for fam, p in measured.items():
            probes.append(p)
            if fam == ref:
                p.reason = "reference"
                continue
            est = relative_factor(p, r0)
            if est is None:
                p.reason = "no loss increase measured"
            elif abs(math.log(est[0])) <= MIN_SIGNAL * est[1]:
                p.reason = f"x{est[0]:.2f} is within noise (log standard error {est[1]:.2f})"
            else:
                p.factor = min(max(est[0], FACTOR_RANGE[0]), FACTOR_RANGE[1])
                _scale(rows, fam, p.factor)
    return probes


def relative_factor(p: Probe, ref: Probe) -> tuple[float, float] | None:
    """(measured/predicted of ``p`` over that of ``ref``, jackknife standard error of its log over
    the held-out sequences, which both probes share), or None where a loss increase is not positive."""
    n = len(p.diffs)

    def factor(skip: int | None) -> float | None:
        a = sum(d for i, d in enumerate(p.diffs) if i != skip)
        b = sum(d for i, d in enumerate(ref.diffs) if i != skip)
        ok = a > 0 and b > 0 and p.predicted > 0 and ref.predicted > 0
        return (a / p.predicted) / (b / ref.predicted) if ok else None

    full = factor(None)
    if full is None or n < 2:
        return None
    loo = [factor(i) for i in range(n)]
    if any(f is None for f in loo):
        return None
    logs = [math.log(f) for f in loo]
    mean = sum(logs) / n
    return full, math.sqrt((n - 1) / n * sum((x - mean) ** 2 for x in logs))


def factor_for(probes: list[Probe], method: str, group: str) -> float:
    """The factor the probes applied to ``method``'s family in ``group`` (1 where none)."""
    fam = family_of(method)
    return next((p.factor for p in probes if p.group == group and p.family == fam), 1.0)


def describe(probes: list[Probe]) -> str:
    """One clause for the report: the factors applied."""
    moved = [p for p in probes if p.factor != 1.0]
    if not moved:
        return "no family rescaled by loss probes" if probes else ""
    return "loss probes rescaled " + ", ".join(f"{p.family} x{p.factor:.2f} ({p.group})" for p in moved)


def _calibrated(cands: list[Candidate]) -> dict[str, list[Candidate]]:
    out: dict[str, list[Candidate]] = {}
    for c in cands:
        if get_method(c.method).needs_hessians:
            out.setdefault(family_of(c.method), []).append(c)
    return out


def _nearest(cands: list[Candidate], numel: int) -> Candidate:
    return min(cands, key=lambda c: (abs(8 * c.rate / max(1, numel) - PROBE_BITS), c.rate))


def _reference(per_family: dict[str, dict]) -> str | None:
    """The first family (registration order) whose methods store a per-row integer grid."""
    grid = [f for f in per_family if getattr(get_method(next(iter(per_family[f].values())).method), "grid", None)]
    return grid[0] if grid else None


def _probe(fam, group, chosen: dict[str, Candidate], state_dict, losses: LossFn, base: list[float]) -> Probe:
    sd = dict(state_dict)
    for name, c in chosen.items():
        t = state_dict[name]
        sd[name] = get_method(c.enc.method).dequantize(c.enc, tuple(t.shape), t.dtype)
    diffs = [a - b for a, b in zip(losses(sd), base)]
    n = len(diffs)
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / max(1, n - 1)
    return Probe(fam, group, len(chosen), float(sum(c.dist for c in chosen.values())), mean, math.sqrt(var / n),
                 diffs)


def _scale(rows, fam: str, factor: float) -> None:
    for row in rows:
        touched = False
        for c in row.all:
            if family_of(c.method) == fam:
                c.dist *= factor
                touched = True
        if touched:
            row.front = pareto(row.all)
