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

FINER_ROWS = 6  # rows offered rates between their rungs, by predicted damage saved per byte
FRACTIONS = (0.9, 0.5)  # of what is left of the budget, spent by each new rate
WF = re.compile(r"wf(\d+(?:\.\d+)?)(-kfac)?")
MAX_BITS = 12.0  # the family's grammar (quant/waterfill.parse_name)


def offer_finer(table: CandidateTable, choice: list, headroom: int) -> list[tuple[TensorRow, Candidate]]:
    """Add candidates between the chosen waterfill rung and the next candidate of the front on the
    rows where bytes buy the most, each sized to spend ``FRACTIONS`` of ``headroom``; the (row,
    candidate) pairs added (none where the table cannot make more or no chosen rung is waterfill),
    for ``withdraw`` once the solve is done."""
    if table.more is None or headroom <= 0:
        return []
    ranked = []
    for i, (row, c) in enumerate(zip(table.rows, choice)):
        m = WF.fullmatch(c.method)
        up = [x for x in row.front if x.rate > c.rate and x.dist < c.dist]
        if m is None or not up:
            continue
        nxt, bits = up[0], float(m.group(1))
        n = WF.fullmatch(nxt.method)
        if n is not None and n.group(2) == m.group(2) and float(n.group(1)) > bits:
            per_bit = (nxt.rate - c.rate) / (float(n.group(1)) - bits)  # bytes per nominal bit, measured
        else:
            per_bit = row.numel / 8
        ranked.append(((c.dist - nxt.dist) / (nxt.rate - c.rate), -i, row, c, bits, m.group(2) or "", per_bit))
    ranked.sort(key=lambda r: (r[0], r[1]), reverse=True)
    added = []
    for _, _, row, c, bits, suffix, per_bit in ranked[:FINER_ROWS]:
        for frac in FRACTIONS:
            b = round(bits + frac * headroom / max(per_bit, 1e-9), 4)
            name = f"wf{b:g}{suffix}"
            if not bits < b <= MAX_BITS or any(x.method == name for x in row.all or row.front):
                continue
            cand = table.more(row.name, name)
            if cand is None or cand.dist >= c.dist:
                continue
            row.all = row.all or list(row.front)
            row.all.append(cand)
            row.front = pareto(row.all)
            added.append((row, cand))
    return added


def withdraw(added: list[tuple[TensorRow, Candidate]]) -> None:
    """Take the candidates ``offer_finer`` added off their rows again: a table reused for another
    budget (``pgc sweep``) offers the same candidates whatever was solved on it before."""
    for row, cand in added:
        row.all = [c for c in row.all if c is not cand]
        row.front = pareto(row.all)
