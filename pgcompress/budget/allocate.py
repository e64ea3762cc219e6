"""Allocation: one candidate per tensor, total rate <= capacity, least total distortion.

A multiple-choice knapsack, solved exactly by dynamic programming over capacity in units of
``unit`` bytes (each rate rounded up, so the true total never exceeds the capacity), then an
exact fill of what the rounding left, measured in bytes: repeated single-tensor upgrades with the
most distortion saved per byte that still fit, and moves of one tensor up paid for by another's
downgrade. Deterministic: ties go to the cheaper candidate and the earlier tensor.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from pgcompress.budget.table import CandidateTable

MAX_CELLS = 1 << 26  # tensors x capacity states held for backtracking (int16 each)
MAX_STATES = 1 << 18
SWAP_ROUNDS = 64  # moves of one tensor up and another down after the knapsack (fill)


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
    """Spend the slack: single upgrades (``_upgrade``), then upgrades paid for by another tensor's
    downgrade (``_swap``), while either lowers the distortion and fits. The knapsack rounds every
    rate up to its unit (up to one unit a tensor lost: ~20-30 B each at 5-16 MB); these moves are
    exact in bytes."""
    choice = _upgrade(table, list(choice), capacity)
    for _ in range(SWAP_ROUNDS):
        if not _swap(table, choice, capacity):
            break
        choice = _upgrade(table, choice, capacity)
    return choice


def _swap(table: CandidateTable, choice: list[int], capacity: int) -> bool:
    """The best move of one tensor up and another down that fits the capacity and lowers the total
    distortion, applied in place; False when there is none."""
    slack = capacity - total_rate(table, choice)
    downs = []  # (bytes freed, distortion added, row, candidate)
    for i, row in enumerate(table.rows):
        cur = row.front[choice[i]]
        for j in range(choice[i]):
            downs.append((cur.rate - row.front[j].rate, row.front[j].dist - cur.dist, i, j))
    if not downs:
        return False
    downs.sort(key=lambda d: (d[0], d[1], d[2], d[3]))
    freed = [d[0] for d in downs]
    best_after = [0] * len(downs)  # index of the least distortion added among downs[k:]
    best_after[-1] = len(downs) - 1
    for k in range(len(downs) - 2, -1, -1):
        b = best_after[k + 1]
        best_after[k] = k if downs[k][1] <= downs[b][1] else b
    best = None  # (net saving, row up, candidate, row down, candidate)
    for i, row in enumerate(table.rows):
        cur = row.front[choice[i]]
        for j in range(choice[i] + 1, len(row.front)):
            need = row.front[j].rate - cur.rate - slack
            saving = cur.dist - row.front[j].dist
            if need <= 0:
                continue  # a single upgrade: _upgrade's
            k = bisect.bisect_left(freed, need)
            # the cheapest-in-distortion downgrade freeing enough, on another tensor
            for kk in (best_after[k],) if k < len(downs) else ():
                d = downs[kk]
                if d[2] == i:
                    d = _other_row(downs, k, i)
                    if d is None:
                        continue
                net = saving - d[1]
                if net > 0 and (best is None or net > best[0]):
                    best = (net, i, j, d[2], d[3])
    if best is None:
        return False
    _, i, j, k, m = best
    choice[i], choice[k] = j, m
    return True


def _other_row(downs: list, start: int, row: int):
    """The downgrade with the least distortion added among downs[start:] not on ``row``."""
    out = None
    for d in downs[start:]:
        if d[2] != row and (out is None or d[1] < out[1]):
            out = d
    return out


def _upgrade(table: CandidateTable, choice: list[int], capacity: int) -> list[int]:
    """While an upgrade fits, take the one saving the most distortion per byte."""
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
