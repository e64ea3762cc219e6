"""The candidate table: for every tensor, each registered candidate method's stored form, its
rate (coded bytes, ``rate.py``) and its distortion (predicted loss increase, ``distortion.py``).

Built once per checkpoint + calibration; allocations at any number of budgets reuse it
(``pgc sweep``). Candidates no better in distortion than a cheaper one are dropped, so each
tensor keeps its rate-distortion front, sorted by rate.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from pgcompress.budget.banks import find_banks, split_banks
from pgcompress.budget.distortion import Distortion
from pgcompress.budget.rate import RateMeter
from pgcompress.errors import MethodError
from pgcompress.progress import progress_bar
from pgcompress.quant import lqer
from pgcompress.quant.base import Encoded, QuantContext, TensorKind
from pgcompress.registry import candidate_methods, get_method
from pgcompress.torch_threads import torch_threads

QUANT_WORKERS = 2
SCORE_WORKERS = 2


@dataclass
class Candidate:
    method: str  # the method asked for (what a user would write in --method)
    rate: int  # bytes: streams coded (upper bound, until measured in an artifact) + header share
    dist: float
    enc: Encoded = field(repr=False)
    exact: bool = False  # rate measured in a written artifact


@dataclass
class TensorRow:
    name: str
    shape: tuple[int, ...]
    numel: int
    basis: str  # how its distortion is computed
    front: list[Candidate]  # rate-distortion front, rate ascending, distortion descending
    tried: int  # candidates evaluated before pruning
    all: list[Candidate] = field(default_factory=list, repr=False)  # every candidate evaluated

    def upgrades(self, cand: Candidate) -> list[Candidate]:
        """The front's candidates that cost more than ``cand`` and damage less, cheapest first."""
        return [x for x in self.front if x.rate > cand.rate and x.dist < cand.dist]

    def measured(self, cand: Candidate, rate: int) -> None:
        """The artifact measured ``cand``'s real bytes: use them and recompute the front."""
        cand.rate = rate
        cand.exact = True
        self.front = pareto(self.all or self.front)


@dataclass
class CandidateTable:
    rows: list[TensorRow]
    distortion_kind: str
    uniform: dict[str, dict[str, Candidate]]  # method -> tensor -> candidate (before pruning), for comparisons
    # bank name -> slices, for banks whose rows are their slices ``name[i]`` (banks.py); the solver
    # splits the state dict the same way and stores each such bank as one ``slices`` entry
    banks: dict[str, int] = field(default_factory=dict)
    # (row name, method name) -> that candidate quantized and scored on the same scale as the rows',
    # or None where the method does not apply: the solver asks for rates between a row's rungs when
    # its steps are wider than what is left of the budget (solver.finer)
    more: Callable[[str, str], Candidate | None] | None = field(default=None, repr=False)

    @property
    def min_rate(self) -> int:
        return sum(r.front[0].rate for r in self.rows)

    @property
    def max_rate(self) -> int:
        return sum(r.front[-1].rate for r in self.rows)

    def within(self, methods: set[str], keep: list[Candidate]) -> CandidateTable | None:
        """A view whose rows offer only ``methods`` (plus each row's candidate in ``keep``), for an
        allocation that must not add a method; the candidates are the same objects. None where a
        row would offer nothing."""
        rows = []
        for row, k in zip(self.rows, keep):
            cands = [c for c in row.all or row.front if c.method in methods]
            cands += [k] if k is not None and k.method in methods and all(k is not c for c in cands) else []
            if not cands:
                return None
            rows.append(replace(row, front=pareto(cands), all=cands))
        return replace(self, rows=rows)


def tensor_kind(name: str, t: torch.Tensor, ctx: QuantContext) -> TensorKind:
    has_h = name in ctx.hessians or f"{name}[0]" in ctx.hessians
    has_a = name in ctx.out_sens or f"{name}[0]" in ctx.out_sens
    return TensorKind(name, tuple(t.shape), t.dtype, has_h, has_h and has_a)


def build_table(state_dict: dict[str, torch.Tensor], ctx: QuantContext, distortion: Distortion,
                submittable: bool = True, methods: list[str] | None = None,
                progress: bool = False, per_slice: bool = True) -> CandidateTable:
    """Evaluate every tensor's candidates. ``methods`` restricts them to these names where a tensor
    offers any of them. Every method's candidates are also kept by method, pruned or not, for the
    uniform-configuration guard and for comparisons. per_slice: a 3-D bank whose slices the
    calibration saw is one row per slice (``banks.py``); False: one row for the whole bank."""
    banks = find_banks(state_dict, ctx.hessians) if per_slice else {}
    state_dict = split_banks(state_dict, banks)
    meter = RateMeter(submittable)

    def quantize(name: str) -> list[tuple[str, Encoded]]:
        # each tensor its own memo: codes (and LQER's decompositions) are reused within a tensor only
        t = state_dict[name]
        tctx = QuantContext(ctx.hessians, memo={}, device=ctx.device, out_sens=ctx.out_sens)
        names = candidate_methods(tensor_kind(name, t, tctx))
        if methods is not None:
            names = [m for m in names if m in methods] or names
        try:
            return _quantize(name, t, names, tctx)
        finally:
            lqer.clear_cache()

    # QUANT_WORKERS tensors are quantized at once; a tensor's quantizing thread hands its candidates
    # to SCORE_WORKERS more threads (rate and distortion) as soon as it is done, so scoring overlaps
    # the next tensors' quantizing. The progress bar counts tensors whose candidates are all scored
    # (the table is done when it reaches the end). Every tensor's work is the same computation
    # whatever thread runs it, and rows are gathered in state-dict order, so the table does not
    # depend on the timing (tests/test_budget_solver.py compares it with one built serially).
    order = list(state_dict)
    queued, rows, uniform = {}, [], {}
    with (torch_threads(worker_threads()), ThreadPoolExecutor(QUANT_WORKERS) as qpool,
          ThreadPoolExecutor(SCORE_WORKERS) as spool):

        def quantize_then_score(name: str) -> list:
            t = state_dict[name]
            return [spool.submit(_score, name, t, m, enc, meter, distortion) for m, enc in quantize(name)]

        for i, name in enumerate(progress_bar(order, "candidates", enabled=progress)):
            for ahead in order[i:i + QUANT_WORKERS + 1]:
                if ahead not in queued:
                    queued[ahead] = qpool.submit(quantize_then_score, ahead)
            t = state_dict[name]
            cands = [f.result() for f in queued.pop(name).result()]
            for c in cands:
                uniform.setdefault(c.method, {})[name] = c
            rows.append(TensorRow(name, tuple(t.shape), t.numel(), distortion.basis(name), pareto(cands), len(cands),
                                  cands))

    def more(name: str, method: str) -> Candidate | None:
        t = state_dict[name]
        try:
            enc = get_method(method).quantize(name, t, QuantContext(ctx.hessians, device=ctx.device,
                                                                    out_sens=ctx.out_sens))
        except MethodError:
            return None
        return _score(name, t, method, enc, meter, distortion)

    return CandidateTable(rows, distortion.kind, uniform, banks, more)


def worker_threads() -> int:
    """torch's intra-op threads while the table builds: the cores split between the quantizing
    threads rather than both sharing all of them (on 2 cores, one each: the shared checkpoint's table
    in 161 and 174 s against 188 and 181 s, alternating in one process on an AMD EPYC)."""
    return max(1, torch.get_num_threads() // QUANT_WORKERS)


def _quantize(name, t, names, ctx) -> list[tuple[str, Encoded]]:
    encs = []
    for m in names:
        try:
            enc = get_method(m).quantize(name, t, ctx)
        except MethodError:
            continue  # e.g. a group size that does not divide this tensor's columns
        encs.append((m, enc))
    if not encs:
        raise MethodError(f"tensor {name!r}: no candidate method applies to a {tuple(t.shape)} {t.dtype} tensor")
    return encs


def _score(name, t, m, enc, meter, distortion) -> Candidate:
    W_hat = get_method(enc.method).dequantize(enc, tuple(t.shape), t.dtype)
    d = distortion(name, t.detach().float(), W_hat.float()) if t.is_floating_point() else 0.0
    return Candidate(m, meter.encoded_bytes(name, t.shape, enc), d, enc)


def pareto(cands: list[Candidate]) -> list[Candidate]:
    """Candidates not dominated (another with rate <= and distortion <, or equal both and earlier)."""
    order = sorted(range(len(cands)), key=lambda i: (cands[i].rate, cands[i].dist, i))
    front, best = [], float("inf")
    for i in order:
        if cands[i].dist < best:
            front.append(cands[i])
            best = cands[i].dist
    return front
