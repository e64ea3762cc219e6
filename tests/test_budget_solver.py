"""The budget solver: never over the budget, never worse than a uniform method, deterministic,
exact in its knapsack, and honest about what its distortion is computed from."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pgcompress
from pgcompress.budget import pack_to_budget, prepare
from pgcompress.budget.accounting import Accounting
from pgcompress.budget.allocate import allocate
from pgcompress.budget.solver import uniform_choice
from pgcompress.budget.table import Candidate, CandidateTable, TensorRow, pareto
from pgcompress.errors import BudgetError

# methods enough to span 2..16 bits without GPTQ (which needs a model): keeps each example fast
FAST = ["int2-rtn", "int3-rtn", "int4-rtn", "int5-sdclip-kauto", "int6-rtn", "int8-rtn", "int8-ref",
        "fp16", "bf16", "raw"]


@st.composite
def state_dicts(draw):
    """Random non-reference state dicts (so no model runs: weight-space distortion)."""
    n = draw(st.integers(1, 4))
    sd, g = {}, torch.Generator().manual_seed(draw(st.integers(0, 10_000)))
    for i in range(n):
        kind = draw(st.sampled_from(["matrix", "matrix", "vector", "int", "bank"]))
        if kind == "matrix":
            shape = (draw(st.integers(8, 96)), draw(st.integers(48, 160)))
        elif kind == "bank":
            shape = (draw(st.integers(2, 3)), draw(st.integers(8, 32)), draw(st.integers(48, 96)))
        else:
            shape = (draw(st.integers(1, 300)),)
        if kind == "int":
            sd[f"t{i}.ids"] = torch.randint(0, 50, shape, generator=g)
        else:
            dtype = draw(st.sampled_from([torch.float32, torch.bfloat16]))
            sd[f"t{i}.w"] = (torch.randn(shape, generator=g) * draw(st.floats(0.01, 1.0))).to(dtype)
    return sd


def _prepared(sd):
    return prepare(sd, methods=FAST)


@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(sd=state_dicts(), frac=st.floats(0.0, 1.2), code_len=st.integers(0, 3000))
def test_fits_beats_uniform_and_is_deterministic(sd, frac, code_len):
    prep = _prepared(sd)
    assert "weight-space MSE" in prep.calibration  # not the reference model: the output says so
    code = "x = 1\n" * (code_len // 6)
    acc = Accounting(code)
    lo = prep.table.min_rate + acc.code_bytes + 3000
    hi = prep.table.max_rate + acc.code_bytes + 20000
    budget = int(lo + frac * (hi - lo))
    try:
        sol = pack_to_budget(sd, budget, code, prepared=prep)
    except BudgetError as exc:
        # only when even the smallest configuration does not fit, and then it says by how much
        smallest = _uniform_total(prep, sd, code, [row.front[0] for row in prep.table.rows], budget)
        assert smallest >= budget and exc.total_bytes >= budget
        return
    real = len(sol.data) + Accounting(code).count(sol.data).code_bytes
    assert real == sol.total_bytes and real < budget
    restored = pgcompress.unpack(sol.data)
    assert set(restored) == set(sd) and all(restored[k].shape == sd[k].shape for k in sd)
    # never worse than any single method that fits (each tensor offering it takes it)
    for method in prep.table.uniform:
        cands = uniform_choice(prep.table, method)
        if _uniform_total(prep, sd, code, cands, budget) < budget:
            assert sol.predicted <= sum(c.dist for c in cands) * (1 + 1e-9) + 1e-12, method
    again = pack_to_budget(sd, budget, code, prepared=_prepared(sd))
    assert again.data == sol.data


def _uniform_total(prep, sd, code, cands, budget) -> int:
    from pgcompress.pack import assemble

    data = assemble(f"pgc-solver budget={budget}", [(r.name, sd[r.name], c.enc) for r, c in zip(prep.table.rows, cands)], submittable=True)
    return len(data) + Accounting(code).count(data).code_bytes


def _table(rows: list[list[tuple[int, float]]]) -> CandidateTable:
    out = []
    for i, cands in enumerate(rows):
        cs = [Candidate(f"m{j}", r, d, None) for j, (r, d) in enumerate(cands)]
        out.append(TensorRow(f"t{i}", (1,), 1, "mse", pareto(cs), len(cs)))
    return CandidateTable(out, "mse", {})


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.lists(st.tuples(st.integers(1, 400), st.floats(0, 100)), min_size=1, max_size=4),
                     min_size=1, max_size=5),
       cap=st.integers(0, 1500))
def test_allocation_is_the_exact_knapsack_optimum(rows, cap):
    """Against brute force over every combination (independent of the DP)."""
    table = _table(rows)
    best = None
    for combo in itertools.product(*[range(len(r)) for r in rows]):
        rate = sum(rows[i][j][0] for i, j in enumerate(combo))
        dist = sum(rows[i][j][1] for i, j in enumerate(combo))
        if rate <= cap and (best is None or dist < best):
            best = dist
    choice = allocate(table, cap)
    if best is None:
        assert choice is None
        return
    got_rate = sum(r.front[j].rate for r, j in zip(table.rows, choice))
    got = sum(r.front[j].dist for r, j in zip(table.rows, choice))
    assert got_rate <= cap
    assert got == pytest.approx(best, rel=1e-9, abs=1e-9)


def test_large_capacities_round_without_exceeding():
    """Past 2^18 states the DP works in units of bytes; rounding must never push a choice over."""
    g = np.random.default_rng(0)
    rows = [[(int(r), float(d)) for r, d in zip(np.sort(g.integers(10_000, 400_000, 5)), np.sort(g.random(5))[::-1])]
            for _ in range(40)]
    table = _table(rows)
    cap = sum(r[2][0] for r in rows) + 12_345
    choice = allocate(table, cap)
    used = sum(r.front[j].rate for r, j in zip(table.rows, choice))
    assert used <= cap
    assert cap - used < 0.001 * cap or all(j == len(r.front) - 1 for r, j in zip(table.rows, choice))


def test_budget_below_minimum_names_the_smallest_total():
    sd = {"w": torch.randn(64, 128), "b": torch.randn(64)}
    prep = _prepared(sd)
    with pytest.raises(BudgetError) as info:
        pack_to_budget(sd, 500, prepared=prep)
    smallest = _uniform_total(prep, sd, None, [row.front[0] for row in prep.table.rows], 500)
    assert f"{smallest:,}" in str(info.value) and info.value.total_bytes == smallest


@pytest.mark.parametrize("frac", [0.35, 0.7])
def test_pessimistic_rate_estimates_still_end_near_the_budget(frac):
    """Estimated rates are upper bounds (the artifact picks the best codec per stream); when they
    are far too high the first artifact fits with much to spare and refined rates shift every
    later allocation. The solver must still spend the budget: headroom under 1%, unless every
    tensor already has its best candidate."""
    g = torch.Generator().manual_seed(3)
    sd = {f"m{i}.w": torch.randn(48 + 16 * i, 96, generator=g) * 0.05 for i in range(8)}
    sd.update({f"v{i}": torch.randn(96, generator=g) for i in range(4)})
    prep = _prepared(sd)
    for row in prep.table.rows:  # as if every estimate were 8% pessimistic
        for c in row.all:
            c.rate = int(c.rate * 1.08)
        row.front = pareto(row.all)
    acc = Accounting(None)
    lo, hi = prep.table.min_rate + 12_000, prep.table.max_rate
    budget = int(lo + frac * (hi - lo))
    sol = pack_to_budget(sd, budget, prepared=prep)
    assert sol.total_bytes == len(sol.data) + acc.count(sol.data).code_bytes < budget
    at_top = all(c is row.front[-1] for c, row in zip(sol.choice, prep.table.rows))
    assert sol.headroom < 0.01 * budget or at_top, (sol.headroom, sol.history)


def test_rescue_steps_down_from_an_overshooting_capacity_to_a_fit():
    """When no round fitted (the measured total moved more than the capacity steps), the rescue
    rounds step the capacity down until the solver's own allocation fits; here the first two counts
    come out 3% of the budget too high."""
    from dataclasses import replace

    from pgcompress.budget.solver import _Rounds

    g = torch.Generator().manual_seed(5)
    sd = {f"m{i}.w": torch.randn(64, 96, generator=g) * 0.05 for i in range(6)}
    prep = _prepared(sd)
    budget = int(prep.table.min_rate + 0.6 * (prep.table.max_rate - prep.table.min_rate)) + 20_000

    class Drifting(Accounting):
        calls = 0

        def count(self, artifact):
            Drifting.calls += 1
            c = super().count(artifact)
            return replace(c, code_bytes=c.code_bytes + (budget * 3 // 100 if Drifting.calls <= 2 else 0))

    run = _Rounds(prep.table, sd, budget, Drifting(None), "auto", True, prep.cache)
    run.rescue(budget)  # a capacity of the whole budget: the first rounds overshoot
    assert run.best is not None and run.best.total_bytes < budget
    assert len(run.history) >= 3 and all(t >= budget for _, t in run.history[:2])


def test_the_parallel_candidate_table_equals_a_serial_one(monkeypatch):
    """Tensors quantized two at a time, candidates scored in other threads: the same table, byte for
    byte, as one built a tensor and a candidate at a time (GPTQ, LQER, wf and the grids all run)."""
    from conftest import reference_like_state_dict

    from pgcompress.budget import table as T
    from pgcompress.budget.distortion import Distortion
    from pgcompress.quant.base import QuantContext
    from pgcompress.quant.calibration import CalibConfig, calibrate_stats

    sd = reference_like_state_dict(seed=3, dim=64, layers=2, vocab=128)
    stats = calibrate_stats(sd, CalibConfig(selfgen=2, seq_len=64), fisher_seqs=1)
    ctx = QuantContext(stats.hessians, out_sens=stats.out_sens)

    # the same intra-op threads for both (the table splits the cores between its quantizing threads)
    monkeypatch.setattr(T, "worker_threads", lambda: 1)

    def build(workers):
        monkeypatch.setattr(T, "QUANT_WORKERS", workers)
        monkeypatch.setattr(T, "SCORE_WORKERS", workers)
        return T.build_table(sd, ctx, Distortion(stats))

    def flat(table):
        return [(r.name, c.method, c.rate, c.dist, c.enc.method, repr(c.enc.params),
                 [(k, a.dtype.str, a.tobytes()) for k, a in c.enc.streams.items()])
                for r in table.rows for c in r.all]

    serial, parallel = flat(build(1)), flat(build(2))
    assert {m for _, m, *_ in serial} >= {"int4-gptq", "int4-gptq+lqer", "wf3-kfac"}
    assert parallel == serial


def test_the_candidates_bar_advances_only_past_tensors_whose_scoring_is_done(monkeypatch):
    """The table's progress bar counts scored tensors: each time it moves on, every candidate of
    the tensors it has passed has its rate and distortion (before, it ran ahead of the scoring
    threads and reached its end while they still worked, which read like a hang)."""
    from pgcompress.budget import table as T
    from pgcompress.budget.distortion import Distortion
    from pgcompress.quant.base import QuantContext

    g = torch.Generator().manual_seed(0)
    sd = {f"w{i}": torch.randn(64, 96, generator=g) for i in range(6)}
    scored: dict[str, int] = {}
    score = T._score

    def slow_score(name, *args):
        time.sleep(0.02)  # scoring lags quantizing, as on the shared checkpoint
        out = score(name, *args)
        scored[name] = scored.get(name, 0) + 1
        return out

    seen = []

    def bar(items, desc, enabled=False):
        for k, item in enumerate(items):
            if k:  # the bar moved on from the previous tensor: it must be wholly scored
                seen.append(scored.get(items[k - 1], 0))
            yield item
        seen.append(scored.get(items[-1], 0))

    monkeypatch.setattr(T, "_score", slow_score)
    monkeypatch.setattr(T, "progress_bar", bar)
    methods = ["int4-rtn", "int6-rtn", "int8-rtn", "fp16"]
    table = T.build_table(sd, QuantContext({}), Distortion(None), methods=methods)
    assert seen == [len(methods)] * len(sd)
    assert [r.tried for r in table.rows] == [len(methods)] * len(sd)


def test_headroom_over_the_target_is_explained():
    from pgcompress.budget.accounting import Counted
    from pgcompress.budget.solver import Solution, headroom_note

    table = _table([[(1000, 5.0), (5000, 1.0)], [(300, 2.0), (900, 1.5), (2000, 0.5)]])
    rows = table.rows

    def solution(choice, budget):
        data = b"x" * sum(c.rate for c in choice)
        return Solution(data, budget, Counted(0, 0, None), sum(c.dist for c in choice), "test", choice=choice)

    coarse = solution([rows[0].front[0], rows[1].front[1]], 2_500)  # 600 B left; next steps +1,100 and +4,000
    note = headroom_note(table, coarse, 64)
    assert "headroom 599 B" in note and "smallest upgrade is +1,100 B, on t1" in note
    unspent = solution([rows[0].front[0], rows[1].front[0]], 2_500)  # +600 B on t1 would fit
    assert "+600 B (t1) fits" in headroom_note(table, unspent, 64)
    full = solution([rows[0].front[1], rows[1].front[2]], 8_000)
    assert "largest candidate" in headroom_note(table, full, 64)
    assert headroom_note(table, solution([rows[0].front[1], rows[1].front[2]], 7_010), 64) == ""


def test_fill_moves_one_tensor_up_and_pays_with_another_ones_downgrade():
    from pgcompress.budget.allocate import fill, total_rate

    table = _table([[(100, 10.0), (200, 5.0)], [(50, 3.0), (140, 2.9)], [(30, 1.0)]])
    # 270 B used of 290: no single upgrade fits (+100), but t0 up and t1 down (+100 - 90) does
    out = fill(table, [0, 1, 0], 290)
    assert out == [1, 0, 0] and total_rate(table, out) <= 290
    assert fill(table, [0, 1, 0], 279) == [0, 1, 0]  # 9 B of slack: the move needs 10
