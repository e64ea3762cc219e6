"""Rates between a row's rungs (pgcompress/budget/finer.py): when what is left of the budget is
narrower than every row's next candidate, the solver asks the table for waterfill rates between
the rungs, sized to what is left, on the rows that save the most predicted damage per byte; the
allocation then spends it. A synthetic table whose ``more`` interpolates between the rungs stands
in for quantizing (the real path: tests/test_budget_headroom.py and bench/headroom.py)."""

from __future__ import annotations

import re

from pgcompress.budget.allocate import allocate, total_rate
from pgcompress.budget.finer import FINER_ROWS, offer_finer, withdraw
from pgcompress.budget.table import Candidate, CandidateTable, TensorRow, pareto

RUNGS = (2.0, 2.5, 3.0)


def rung(bits: float, per_bit: int, slope: float) -> Candidate:
    """A waterfill rung: per_bit bytes a nominal bit, damage falling by slope per byte."""
    rate = int(per_bit * bits)
    return Candidate(f"wf{bits:g}-kfac", rate, 1e6 - slope * rate, enc=None)


def table(slopes: list[float], per_bit: int = 8_000, asked: list | None = None) -> CandidateTable:
    rows = []
    for i, s in enumerate(slopes):
        cands = [rung(b, per_bit, s) for b in RUNGS] + [Candidate("fp16", 10 ** 7, 0.0, enc=None)]
        rows.append(TensorRow(f"bank[{i}]", (256, 256), 65_536, "kfac", pareto(cands), len(cands), cands))

    def more(name: str, method: str) -> Candidate:
        if asked is not None:
            asked.append((name, method))
        i = int(name[5:-1])
        bits = float(re.fullmatch(r"wf(\d+(?:\.\d+)?)-kfac", method).group(1))
        return rung(bits, per_bit, slopes[i])

    return CandidateTable(rows, "kfac", {}, {}, more)


def test_rates_between_the_rungs_are_sized_to_what_is_left_and_go_to_the_best_rows():
    slopes = [1.0, 5.0, 3.0, 0.5, 4.0, 2.0, 6.0, 0.1]
    asked: list = []
    t = table(slopes, asked=asked)
    choice = [r.front[0] for r in t.rows]  # every row on wf2: the next rung is +4,000 B
    added = len(offer_finer(t, choice, headroom=900))
    # the FINER_ROWS rows with the steepest damage per byte, each at 0.9 and 0.5 of 900 B
    best_rows = sorted(range(len(slopes)), key=lambda i: -slopes[i])[:FINER_ROWS]
    assert sorted({int(n[5:-1]) for n, _ in asked}) == sorted(best_rows)
    assert added == 2 * FINER_ROWS
    for name, method in asked:
        bits = float(method[2:].split("-")[0])
        assert 2.0 < bits < 2.5 and method.endswith("-kfac")
        extra = 8_000 * (bits - 2.0)
        assert extra <= 900 + 1  # within what is left, up to the name's rounding
    row6 = t.rows[6]
    # 2 + 0.5 * 900 / 8000 = 2.05625 and 2 + 0.9 * 900 / 8000 = 2.10125, named to 4 decimals
    assert [c.method for c in row6.front][:3] == ["wf2-kfac", "wf2.0562-kfac", "wf2.1012-kfac"]


def test_the_allocation_then_spends_what_no_rung_could():
    t = table([1.0, 5.0, 3.0])
    choice_idx = [0, 0, 0]
    capacity = total_rate(t, choice_idx) + 900
    # before: every next rung is +4,000 B, nothing fits, 900 B stay unused
    assert allocate(t, capacity) == choice_idx
    offer_finer(t, [r.front[0] for r in t.rows], headroom=900)
    after = allocate(t, capacity)
    left = capacity - total_rate(t, after)
    assert left < 100 and total_rate(t, after) <= capacity


def test_nothing_is_offered_where_the_table_cannot_make_candidates_or_no_rung_is_waterfill():
    t = table([1.0, 2.0])
    t.more = None
    assert offer_finer(t, [r.front[0] for r in t.rows], headroom=900) == []
    t = table([1.0, 2.0])
    assert offer_finer(t, [r.front[-1] for r in t.rows], headroom=900) == []  # fp16: the top, not wf
    assert offer_finer(t, [r.front[0] for r in t.rows], headroom=0) == []


def test_withdraw_restores_every_front():
    t = table([1.0, 5.0, 3.0])
    before = [[c.method for c in r.front] for r in t.rows]
    added = offer_finer(t, [r.front[0] for r in t.rows], headroom=900)
    assert added and [[c.method for c in r.front] for r in t.rows] != before
    withdraw(added)
    assert [[c.method for c in r.front] for r in t.rows] == before


def test_on_a_calibrated_table_the_finer_rungs_pack_and_decode_as_any_candidate():
    """The real path: ``prepare``'s table quantizes and scores rates between the rungs; the solver's
    artifact with such a rung on a tensor unpacks, and the generated decoder (which knows the family
    by its name's grammar, not by the ladder) decodes the same tensors."""
    import torch

    import pgcompress
    from conftest import reference_like_state_dict
    from pgcompress.budget import prepare
    from pgcompress.budget.solver import _assemble
    from pgcompress.quant.calibration import CalibConfig
    from pgcompress.submission.decoder import build_decoder

    sd = reference_like_state_dict(seed=5, dim=64, layers=2, vocab=128)
    methods = [f"wf{b}-kfac" for b in RUNGS] + ["fp16"]
    prep = prepare(sd, CalibConfig(selfgen=2, seq_len=64), methods=methods, probe_seqs=0)
    t = prep.table
    choice = [r.front[0] for r in t.rows]
    wf_rows = [i for i, c in enumerate(choice) if c.method.startswith("wf")]
    assert wf_rows
    assert offer_finer(t, choice, headroom=300)
    finer = [(i, c) for i in wf_rows for c in t.rows[i].all if c.method not in methods]
    assert finer
    for i, c in finer:  # between the rung below and the next candidate, in bytes and in damage
        below = choice[i]
        assert c.rate > below.rate and c.dist < below.dist
    i, c = finer[0]
    choice[i] = c
    data = _assemble(t, sd, choice, 10 ** 8, "auto", True, prep.cache)
    restored = pgcompress.unpack(data)
    ns: dict = {}
    exec(compile(build_decoder(data), "decoder", "exec"), ns)
    got = ns["decode"](data)
    assert all(torch.equal(got[k], restored[k]) for k in restored)
    name = t.rows[i].name
    assert not torch.equal(restored[name], pgcompress.unpack(_assemble(t, sd, [r.front[0] for r in t.rows], 10 ** 8,
                                                                      "auto", True, prep.cache))[name])
