"""Allocation: one candidate per tensor, total rate <= capacity, least total distortion.

A multiple-choice knapsack, solved exactly by dynamic programming over capacity in units of
``unit`` bytes (each rate rounded up, so the true total never exceeds the capacity), then an
exact fill of what the rounding left: repeated single-tensor upgrades with the most distortion
saved per byte that still fit, measured in bytes. Deterministic: ties go to the cheaper
candidate and the earlier tensor.
"""

from __future__ import annotations

import math

import numpy as np

from pgcompress.budget.table import CandidateTable

MAX_CELLS = 1 << 26  # tensors x capacity states held for backtracking (int16 each)
MAX_STATES = 1 << 18


def allocate(table: CandidateTable, capacity: int) -> list[int] | None:
    """Index into each row's front, or None when even the cheapest choice exceeds ``capacity``."""
    rows = table.rows
    if table.min_rate > capacity:
        return None
    if table.max_rate <= capacity:
        return [len(r.front) - 1 for r in rows]
    states = max(1024, min(MAX_STATES, MAX_CELLS // max(1, len(rows))))
    unit = max(1, math.ceil(capacity / (states - 1)))
    n = capacity // unit + 1
    dp = np.full(n, np.inf)
    dp[0] = 0.0
    picks = np.zeros((len(rows), n), dtype=np.int16)
    for i, row in enumerate(rows):
        new = np.full(n, np.inf)
        pick = picks[i]
        for j, c in enumerate(row.front):
            w = -(-c.rate // unit)
            if w >= n:
                break  # fronts are sorted by rate
            shifted = np.full(n, np.inf)
            shifted[w:] = dp[:n - w] + c.dist
            better = shifted < new
            new[better] = shifted[better]
            pick[better] = j
        dp = new
    end = int(np.argmin(dp))  # least distortion at any used capacity (first on ties: the smallest)
    if not np.isfinite(dp[end]):
        return None
    choice = [0] * len(rows)
    for i in range(len(rows) - 1, -1, -1):
        j = int(picks[i, end])
        choice[i] = j
        end -= -(-rows[i].front[j].rate // unit)
    return fill(table, choice, capacity)


def total_rate(table: CandidateTable, choice: list[int]) -> int:
    return sum(r.front[j].rate for r, j in zip(table.rows, choice))


def fill(table: CandidateTable, choice: list[int], capacity: int) -> list[int]:
    """Spend the slack: while an upgrade fits, take the one saving the most distortion per byte."""
    choice = list(choice)
    slack = capacity - total_rate(table, choice)
    while True:
        best = None  # (saving per byte, saving, row, candidate)
        for i, row in enumerate(table.rows):
            cur = row.front[choice[i]]
            for j in range(choice[i] + 1, len(row.front)):
                c = row.front[j]
                extra = c.rate - cur.rate
                if extra > slack:
                    break
                saving = cur.dist - c.dist
                key = (saving / max(extra, 1), saving)
                if saving > 0 and (best is None or key > best[0]):
                    best = (key, i, j)
        if best is None:
            return choice
        _, i, j = best
        slack -= table.rows[i].front[j].rate - table.rows[i].front[choice[i]].rate
        choice[i] = j
