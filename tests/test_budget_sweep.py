"""The sweep's best-measured-that-fits reading (pgcompress.budget.sweep.mark_best_fits), checked
against its definition on random sweeps: under the budget, lowest val_bpb, non-increasing."""

from __future__ import annotations

import random

from pgcompress.budget.sweep import SweepRow, mark_best_fits


def _random_sweep(rng: random.Random) -> list[SweepRow]:
    rows = []
    for b in sorted(rng.sample(range(1_000, 20_000), rng.randint(1, 6))):
        total = b - 1 - rng.randint(0, 50)
        rows.append(SweepRow("solver", str(b), total, total, b - 1 - total, 0.0))
    for k in range(rng.randint(0, 4)):
        total = rng.randint(500, 25_000)
        rows.append(SweepRow("uniform", f"int{k + 4}-gptq", total, total, None, 0.0))
    for r in rows:
        r.val_bpb = 1.0 + rng.random() * 1e-3
        r.gap = r.val_bpb - 1.0
    return rows


def test_best_fit_is_the_lowest_measured_under_each_budget_and_never_increases():
    rng = random.Random(0)
    for _ in range(300):
        rows = _random_sweep(rng)
        mark_best_fits(rows)
        solver = sorted((r for r in rows if r.kind == "solver"), key=lambda r: int(r.label))
        for r in solver:
            fitting = [o.gap for o in rows if o.total_bytes < int(r.label)]
            assert r.best_fit_gap == min(fitting)  # brute force over the definition
            assert r.best_fit_gap <= r.gap
            assert (r.best_fit == "itself") == (r.best_fit_gap == r.gap and min(
                (o for o in rows if o.total_bytes < int(r.label) and o.gap == r.gap),
                key=lambda o: o.total_bytes) is r)
        gaps = [r.best_fit_gap for r in solver]
        assert all(b <= a for a, b in zip(gaps, gaps[1:]))
        assert all(not r.best_fit for r in rows if r.kind == "uniform")


def test_a_uniform_artifact_over_the_budget_is_never_the_best_fit():
    rows = [SweepRow("solver", "1000", 990, 990, 9, 0.0, val_bpb=1.2, gap=0.2),
            SweepRow("uniform", "int8-gptq", 1000, 1000, None, 0.0, val_bpb=1.0, gap=0.0),
            SweepRow("uniform", "int4-gptq", 500, 500, None, 0.0, val_bpb=1.1, gap=0.1)]
    mark_best_fits(rows)
    assert rows[0].best_fit == "int4-gptq" and rows[0].best_fit_gap == 0.1
