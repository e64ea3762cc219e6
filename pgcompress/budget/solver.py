"""The budget solver: the least-damage artifact whose counted total is strictly below the budget.

1. ``build_table``: every tensor's candidates with measured rates and predicted distortions;
2. ``allocate``: exact multiple-choice knapsack at a capacity = budget - fixed costs;
3. write the artifact (all allowed codecs, per stream), count code + decoder + artifact exactly;
4. move the capacity by what the real total missed the budget by, re-allocate, and keep the best
   artifact that fits (the estimated rates are upper bounds, so the first one usually fits and
   later rounds spend the measured slack);
5. where what is left is still over 0.01% of the budget and narrower than every row's next step,
   offer rates between the rungs (``finer.py``) and allocate again;
6. self-contained: where it is still over, allocate within the best artifact's methods and within
   them plus or less one (the decoder's size moves with the methods; the knapsack cannot see it).
   Same inputs -> same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from pgcompress.budget.accounting import Accounting, Counted
from pgcompress.budget.allocate import allocate
from pgcompress.budget.banks import join_banks, merge_encoded, row_bytes, split_banks
from pgcompress.budget.finer import offer_finer, withdraw
from pgcompress.budget.rate import header_share
from pgcompress.budget.table import Candidate, CandidateTable
from pgcompress.errors import BudgetError
from pgcompress.pack import assemble

ROUNDS = 10
RESCUE_ROUNDS = 8  # downward steps when no round fitted
POLISH_ROUNDS = 3  # re-allocations from the best artifact's measured rates, after the rounds
FINER_PASSES = 2  # times finer rungs are offered when the headroom stays over the target
SET_TRIES = 6  # method sets allocated within at the end (self-contained), when the headroom stays over it
# What the preamble and the header's fixed part cost beyond the tensors' shares (measured: ~60 B).
HEADER_FIXED = 256
# First guess at the minified decoder; round 1 counts the real one, so the guess only moves round 1's
# capacity (measured: 17,586 B for int6 artifacts with the automatic codec choice, 20,338 B with
# every submittable codec; bench/results/coder_consolidation.md).
DECODER_GUESS = 15_000


@dataclass
class TensorChoice:
    name: str
    shape: tuple[int, ...]
    method: str
    bits: float  # stored bits per parameter (streams only)
    bytes: int  # coded stream bytes in the artifact
    predicted: float  # predicted loss increase (table units)
    basis: str


@dataclass
class Solution:
    data: bytes
    budget: int
    counted: Counted
    predicted: float  # total predicted damage
    distortion_kind: str
    tensors: list[TensorChoice] = field(default_factory=list)
    rounds: int = 0  # the round whose artifact this is (0: the uniform guard's)
    history: list = field(default_factory=list)  # (capacity, counted total) per round
    calibration: str = ""  # what the distortion was computed from
    choice: list = field(default_factory=list, repr=False)  # the table's Candidate per tensor
    headroom_note: str = ""  # why the headroom is over the solver's target, where it is

    @property
    def model_bytes(self) -> int:
        return len(self.data)

    @property
    def code_bytes(self) -> int:
        return self.counted.code_bytes

    @property
    def total_bytes(self) -> int:
        return self.code_bytes + self.model_bytes

    @property
    def headroom(self) -> int:
        return self.budget - 1 - self.total_bytes

    @property
    def methods(self) -> dict[str, str]:
        return {t.name: t.method for t in self.tensors}


def solve(table: CandidateTable, state_dict: dict[str, torch.Tensor], budget: int,
          accounting: Accounting | None = None, codec: str = "auto", submittable: bool = True,
          cache: dict | None = None, progress: bool = False) -> Solution:
    accounting = accounting or Accounting()
    cache = {} if cache is None else cache
    state_dict = split_banks(state_dict, table.banks)  # rows are bank slices where the table says so
    # the decoder's size depends on the methods and codecs chosen: a first guess, measured in round 1
    decoder_guess = DECODER_GUESS if accounting.mode == "self-contained" else 0
    capacity = budget - 1 - accounting.code_bytes - decoder_guess - HEADER_FIXED
    tolerance = max(64, budget // 10_000)  # stop once the headroom is under 0.01% of the budget
    run = _Rounds(table, state_dict, budget, accounting, codec, submittable, cache)
    lo = hi = None  # largest capacity known to fit, smallest known to overshoot (on today's rates)
    for _ in range(ROUNDS):
        total, changed = run.round(capacity)
        if total is None:
            break
        if changed:
            lo = hi = None  # rates were refined: capacities measured before are no bracket any more
        step = budget - 1 - total  # move the capacity by what the real total missed the budget by
        if total < budget:
            lo = capacity if lo is None else max(lo, capacity)
            if step < tolerance:
                break
        else:
            hi = capacity if hi is None else min(hi, capacity)
        nxt = capacity + step
        if (hi is not None and nxt >= hi) or (lo is not None and nxt <= lo):
            if lo is None or hi is None:
                nxt = capacity + (step if step else -1) // 2
            else:
                nxt = (lo + hi) // 2
        if lo is not None and hi is not None and hi - lo <= tolerance // 4:
            break
        capacity = nxt
    if run.best is None:
        run.rescue(capacity)
    best = run.polish(tolerance)
    added = []  # steps wider than what is left: rates between the rungs (finer.py), for this solve only
    try:
        for _ in range(FINER_PASSES):
            more = [] if best is None or best.headroom < tolerance else offer_finer(table, best.choice, best.headroom)
            if not more:
                break
            added += more
            best = run.polish(tolerance)
    finally:
        withdraw(added)
    run.best = _uniform_guard(table, state_dict, budget, accounting, codec, submittable, cache, best)
    run.polish(tolerance)  # spend what a uniform configuration that won leaves, too
    best = run.method_sets(tolerance)
    history = run.history
    if best is not None:
        best.history = history
        best.headroom_note = headroom_note(table, best, tolerance)
    if best is None:
        smallest = _assemble(table, state_dict, [0] * len(table.rows), budget, codec, submittable, cache)
        need = accounting.count(smallest).code_bytes + len(smallest)
        raise BudgetError(f"no configuration fits a budget of {budget:,} bytes: the smallest this checkpoint "
                          f"packs to is {need:,} bytes (code + decoder + artifact); raise the budget",
                          need, budget)
    return best


class _Rounds:
    """Allocate at a capacity, write, count; keep the best artifact that fits (same inputs -> same
    rounds -> same bytes)."""

    def __init__(self, table, state_dict, budget, accounting, codec, submittable, cache):
        self.table, self.state_dict, self.budget, self.accounting = table, state_dict, budget, accounting
        self.codec, self.submittable, self.cache = codec, submittable, cache
        self.best: Solution | None = None
        self.seen: dict[tuple, int] = {}  # choice -> its counted total
        self.history: list[tuple[int, int]] = []  # (capacity, counted total) per artifact written

    def round(self, capacity: int) -> tuple[int | None, bool]:
        """(counted total of the allocation at ``capacity``, whether any rate was refined); total
        None when nothing fits the capacity."""
        return self.allocate_and_write(self.table, capacity)

    def allocate_and_write(self, table: CandidateTable, capacity: int) -> tuple[int | None, bool]:
        """``round`` on ``table`` (this one, or a view of it with fewer methods)."""
        choice = allocate(table, capacity)
        if choice is None:
            return None, False
        cands = _candidates(table, choice)
        key = tuple(c.method for c in cands)
        if key in self.seen:
            return self.seen[key], False
        data = _assemble(self.table, self.state_dict, cands, self.budget, self.codec, self.submittable, self.cache)
        counted = self.accounting.count(data)
        total = self.seen[key] = counted.code_bytes + len(data)
        self.history.append((capacity, total))
        if total < self.budget:
            dist = float(sum(c.dist for c in cands))
            if self.best is None or dist < self.best.predicted:
                self.best = _solution(self.table, cands, data, self.budget, counted, len(self.history))
        return total, _refine(self.table, cands, data)

    def rescue(self, capacity: int) -> None:
        """Every round overshot (refined rates or the decoder moved the total more than the steps):
        step the capacity down by at least 0.5% of the budget until an allocation fits."""
        for _ in range(RESCUE_ROUNDS):
            total, _ = self.round(capacity)
            if total is None or total < self.budget:
                return
            capacity -= max(total - self.budget + 1, self.budget // 200)

    def polish(self, tolerance: int) -> Solution | None:
        """Spend what the best artifact left: allocate again at its own measured rates plus its
        headroom (only its upgrades cost estimated bytes), pulling back by any overshoot."""
        for _ in range(POLISH_ROUNDS):
            best = self.best
            if best is None or best.headroom < tolerance:
                break
            self.fit(self.table, sum(c.rate for c in best.choice) + best.headroom, tolerance, 2)
            if self.best is best:
                break
        return self.best

    def method_sets(self, tolerance: int) -> Solution | None:
        """A self-contained submission counts the decoder, and its size depends on which methods
        the artifact uses (kilobytes for some), which the knapsack does not see: on a small model the
        rounds can end with a method set whose upgrades all need another method. Where the best
        artifact leaves ``tolerance`` or more, allocate within its own methods, then within them plus
        or less one method (each new method once, most predicted damage its upgrades save first; at
        most SET_TRIES sets), each at the capacity the best artifact leaves, pulled back by what its
        own artifact overshoots (the decoder's change, measured); keep what fits."""
        if self.accounting.mode != "self-contained":
            return self.best
        tried: set[frozenset] = set()
        for _ in range(SET_TRIES):
            best = self.best
            if best is None or best.headroom < tolerance:
                break
            used = frozenset(c.method for c in best.choice)
            saved: dict[str, float] = {}  # method -> damage its upgrades over the best choice save
            for row, c in zip(self.table.rows, best.choice):
                for x in row.upgrades(c):
                    saved[x.method] = max(saved.get(x.method, 0.0), c.dist - x.dist)
            sets = [used] + [used | {m} for m in sorted(saved, key=lambda m: (-saved[m], m)) if m not in used]
            sets += [used - {m} for m in sorted(used)]
            todo = next((s for s in sets if s not in tried), None)
            if todo is None:
                break
            tried.add(todo)
            view = self.table.within(set(todo), best.choice)
            if view is None:
                continue
            self.fit(view, sum(c.rate for c in best.choice) + best.headroom, tolerance, 3)
        return self.best

    def fit(self, table: CandidateTable, capacity: int, tolerance: int, tries: int) -> None:
        """Allocate and write at ``capacity``, pulling it back by each overshoot (plus a quarter of
        the tolerance), at most ``tries`` artifacts."""
        for _ in range(tries):
            total, _ = self.allocate_and_write(table, capacity)
            if total is None or total < self.budget:
                return
            capacity -= total - self.budget + 1 + tolerance // 4


def headroom_note(table: CandidateTable, best: Solution, tolerance: int) -> str:
    """Why ``best`` leaves ``tolerance`` bytes or more unused (empty when it does not): no tensor's
    next candidate on its front fits the headroom, or the rounds ran out before spending it."""
    if best.headroom < tolerance:
        return ""
    steps = []
    for row, c in zip(table.rows, best.choice):
        up = [(x.rate - c.rate, x.method) for x in row.upgrades(c)]
        if up:
            steps.append((*min(up), row.name))
    share = f"headroom {best.headroom:,} B ({100 * best.headroom / best.budget:.3f}% of the budget)"
    if not steps:
        return f"{share}: every tensor already has its largest candidate"
    step, method, name = min(steps, key=lambda s: (s[0], s[2]))
    if step > best.headroom:
        return (f"{share}: no tensor's next candidate fits in it (the smallest upgrade is +{step:,} B, on {name}); "
                "finer candidates would fill it")
    new = "" if method in {c.method for c in best.choice} else f"; it adds {method} to the artifact (and its decoder)"
    return (f"{share}: an upgrade of +{step:,} B ({name}) fits by its estimated rate{new}, but the solver's rounds "
            "ended without a configuration that used it and still fit")


def _refine(table: CandidateTable, cands: list[Candidate], data: bytes) -> bool:
    """Replace the chosen candidates' estimated rates by the bytes the artifact gave them (streams
    + header share), so the next allocation sees exact numbers where it spends them. True if any
    rate changed."""
    sizes = row_bytes(data)
    changed = False
    for row, c in zip(table.rows, cands):
        if not c.exact:
            rate = sizes[row.name] + header_share(row.name, row.shape, c.enc)
            changed |= rate != c.rate
            row.measured(c, rate)
    return changed


def uniform_choice(table: CandidateTable, method: str) -> list[Candidate] | None:
    """Every tensor that offers ``method`` gets it, the others their cheapest candidate (what
    ``--method`` would give, with the smallest form for the rest); None if no tensor offers it."""
    per = table.uniform.get(method, {})
    if not per:
        return None
    return [per.get(row.name, row.front[0]) for row in table.rows]


def _uniform_guard(table, state_dict, budget, accounting, codec, submittable, cache, best):
    """The allocation works on estimated rates; a uniform configuration whose real bytes fit and
    whose distortion is lower than the solution's replaces it, so the solver is never worse than a
    single method. Only configurations that could fit are written (estimates within 2%)."""
    for method in table.uniform:
        cands = uniform_choice(table, method)
        dist = float(sum(c.dist for c in cands))
        if best is not None and dist >= best.predicted:
            continue
        if sum(c.rate for c in cands) > budget * 1.02:
            continue
        data = _assemble(table, state_dict, cands, budget, codec, submittable, cache)
        counted = accounting.count(data)
        if counted.code_bytes + len(data) < budget:
            best = _solution(table, cands, data, budget, counted, 0)
    return best


def _assemble(table, state_dict, choice, budget, codec, submittable, cache) -> bytes:
    """choice: front indices, or the Candidate objects themselves."""
    cands = _candidates(table, choice)
    encoded = [(row.name, state_dict[row.name], c.enc) for row, c in zip(table.rows, cands)]
    encoded = merge_encoded(encoded, table.banks, join_banks(state_dict, table.banks))
    return assemble(f"pgc-solver budget={budget}", encoded, codec, submittable, cache=cache)


def _candidates(table, choice) -> list[Candidate]:
    return [row.front[c] if isinstance(c, int) else c for row, c in zip(table.rows, choice)]


def _solution(table, choice, data, budget, counted, rounds) -> Solution:
    sizes = row_bytes(data)
    tensors = []
    cands = _candidates(table, choice)
    for row, c in zip(table.rows, cands):
        tensors.append(TensorChoice(row.name, row.shape, c.method, 8 * sizes[row.name] / max(1, row.numel),
                                    sizes[row.name], c.dist, row.basis))
    return Solution(data, budget, counted, float(sum(c.dist for c in cands)), table.distortion_kind, tensors, rounds,
                    choice=cands)
