"""Plain-text tables whose columns line up on every row, however long a cell is."""

from __future__ import annotations


def aligned(rows: list[tuple[str, ...]], right: frozenset[int] = frozenset(), gap: str = "  ") -> list[str]:
    """rows[0] is the header; each column as wide as its widest cell; columns in ``right`` are
    right-aligned (numbers), the others left-aligned. Trailing spaces are dropped."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [gap.join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            .rstrip() for row in rows]
