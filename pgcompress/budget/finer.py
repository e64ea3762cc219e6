"""Rates between a row's rungs, where the budget's last bytes fall between its candidates.

The candidate table offers each calibrated matrix the waterfill family at half-bit rungs; on a
bank slice a rung is kilobytes, so the best artifact can leave more than the solver's target
(0.01% of the budget) unused with no tensor's next candidate fitting in it. The waterfill family's
rate is continuous (``wf<B>``, any B), so the solver asks the table for rates between the rungs of
the rows that save the most predicted damage per byte, sized to what is left (``CandidateTable.more``
quantizes and scores them on the table's scale), and allocates again with them on the fronts.
"""

from __future__ import annotations

import re

from pgcompress.budget.table import Candidate, CandidateTable, TensorRow, pareto
from pgcompress.quant.waterfill import PATTERN, WfName, parse_name

FINER_ROWS = 6  # rows offered rates between their rungs, by predicted damage saved per byte
FRACTIONS = (0.9, 0.5)  # of what is left of the budget, spent by each new rate


def offer_finer(table: CandidateTable, choice: list, headroom: int) -> list[tuple[TensorRow, Candidate]]:
    """Add candidates between the chosen waterfill rung and the next candidate of the front on the
    rows where bytes buy the most, each sized to spend ``FRACTIONS`` of ``headroom``; the (row,
    candidate) pairs added (none where the table cannot make more or no chosen rung is waterfill),
    for ``withdraw`` once the solve is done."""
    if table.more is None or headroom <= 0:
        return []
    ranked = []
    for i, (row, c) in enumerate(zip(table.rows, choice)):
        wf, up = _waterfill(c.method), row.upgrades(c)
        if wf is None or not up:
            continue
        nxt = up[0]
        n = _waterfill(nxt.method)
        if n is not None and n.kfac == wf.kfac and n.bits > wf.bits:
            per_bit = (nxt.rate - c.rate) / (n.bits - wf.bits)  # bytes per nominal bit, measured
        else:
            per_bit = row.numel / 8
        ranked.append(((c.dist - nxt.dist) / (nxt.rate - c.rate), -i, row, c, wf, per_bit))
    ranked.sort(key=lambda r: (r[0], r[1]), reverse=True)
    added = []
    for _, _, row, c, wf, per_bit in ranked[:FINER_ROWS]:
        for frac in FRACTIONS:
            b = round(wf.bits + frac * headroom / max(per_bit, 1e-9), 4)
            name = f"wf{b:g}{'-kfac' if wf.kfac else ''}"
            if b <= wf.bits or any(x.method == name for x in row.all or row.front):
                continue
            cand = table.more(row.name, name)  # None for a rate the family's grammar refuses
            if cand is None or cand.dist >= c.dist:
                continue
            row.all = row.all or list(row.front)
            row.all.append(cand)
            row.front = pareto(row.all)
            added.append((row, cand))
    return added


def _waterfill(method: str) -> WfName | None:
    return parse_name(method) if re.fullmatch(PATTERN, method) else None


def withdraw(added: list[tuple[TensorRow, Candidate]]) -> None:
    """Take the candidates ``offer_finer`` added off their rows again: a table reused for another
    budget (``pgc sweep``) offers the same candidates whatever was solved on it before."""
    for row, cand in added:
        row.all = [c for c in row.all if c is not cand]
        row.front = pareto(row.all)
