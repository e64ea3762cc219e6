"""Loss probes (pgcompress/budget/probe.py): a family whose predicted damage is off by a known
factor gets that factor back, a family that is predicted right keeps its scale, groups are
corrected separately, and held-out calibration windows never overlap the calibration's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgcompress.budget.probe import LINEAR, LOOKUP, Probe, correct_families, relative_factor
from pgcompress.budget.table import Candidate, CandidateTable, TensorRow, pareto
from pgcompress.eval.shards import write_shard
from pgcompress.quant.base import QuantContext
from pgcompress.quant.calibration import shard_tokens
from pgcompress.registry import get_method

GRID = ("int2-gptq", "int3-gptq", "int4-gptq")
WF = ("wf2", "wf3", "wf4")
SEQ_SCALES = (0.7, 1.0, 1.3, 0.9, 1.1, 1.2, 0.8, 1.0)  # per-sequence sensitivity (shared by all probes)


def _setup(bias: dict[tuple[str, str], float], seed: int = 0):
    """Three 32x64 matrices (the first read as a lookup table) with GPTQ and wf candidates. The true
    loss increase of a configuration is sum ||E||^2 (times a per-sequence scale); the table's
    distortion is ||E||^2 divided by bias[(family, group)] (a proxy that under-predicts by it)."""
    g = torch.Generator().manual_seed(seed)
    sd = {f"m{i}.weight": torch.randn(32, 64, generator=g) * 0.1 for i in range(3)}
    X = torch.randn(512, 64, generator=g) * torch.linspace(0.2, 3.0, 64)
    ctx = QuantContext({k: X.T @ X for k in sd}, memo=None)
    group = {k: LOOKUP if k == "m0.weight" else LINEAR for k in sd}
    rows = []
    for name, W in sd.items():
        cands = []
        for method in GRID + WF:
            enc = get_method(method).quantize(name, W, ctx)
            err = float((get_method(method).dequantize(enc, tuple(W.shape), W.dtype) - W).square().sum())
            fam = "wf" if method.startswith("wf") else "grid"
            rate = sum(a.nbytes for a in enc.streams.values())
            cands.append(Candidate(method, rate, err / bias.get((fam, group[name]), 1.0), enc))
        rows.append(TensorRow(name, tuple(W.shape), W.numel(), "kfac", pareto(cands), len(cands), cands))

    def losses(state):
        damage = sum(float((state[k] - sd[k]).square().sum()) for k in sd)
        return [3.0 + s * damage for s in SEQ_SCALES]

    return CandidateTable(rows, "kfac", {}), sd, losses, group


def _wf_dists(table):
    return {(r.name, c.method): c.dist for r in table.rows for c in r.all if c.method.startswith("wf")}


def test_a_family_under_predicted_by_a_known_factor_gets_it_back():
    table, sd, losses, group = _setup({("wf", LINEAR): 3.0, ("wf", LOOKUP): 3.0})
    before = _wf_dists(table)
    probes = correct_families(table, sd, losses, group.get)
    wf = [p for p in probes if p.family.startswith("wf")]
    assert {p.group for p in wf} == {LOOKUP, LINEAR}
    for p in wf:
        assert p.factor == pytest.approx(3.0, rel=1e-6)
    for key, d in _wf_dists(table).items():
        assert d == pytest.approx(3.0 * before[key], rel=1e-6)
    # fronts are re-pruned from the rescaled candidates
    for row in table.rows:
        assert row.front == pareto(row.all)


def test_groups_are_corrected_separately_and_a_right_prediction_keeps_its_scale():
    table, sd, losses, group = _setup({("wf", LOOKUP): 10.0})
    before = _wf_dists(table)
    probes = correct_families(table, sd, losses, group.get)
    by = {(p.family.startswith("wf"), p.group): p for p in probes}
    assert by[(True, LOOKUP)].factor == pytest.approx(10.0, rel=1e-6)
    assert by[(True, LINEAR)].factor == 1.0 and "within noise" in by[(True, LINEAR)].reason
    assert by[(False, LINEAR)].reason == "reference"
    after = _wf_dists(table)
    for (name, method), d in after.items():
        want = 10.0 * before[(name, method)] if group[name] == LOOKUP else before[(name, method)]
        assert d == pytest.approx(want, rel=1e-6)


def test_relative_factor_and_its_jackknife_error():
    ref = Probe("grid", LINEAR, 1, 1.0, 0.0, 0.0, [1.0, 2.0, 3.0, 4.0])
    same = Probe("wf", LINEAR, 1, 0.5, 0.0, 0.0, [0.5, 1.0, 1.5, 2.0])  # measured/predicted equal to ref's
    f, se = relative_factor(same, ref)
    assert f == pytest.approx(1.0) and se == pytest.approx(0.0, abs=1e-12)
    noisy = Probe("wf", LINEAR, 1, 1.0, 0.0, 0.0, [4.0, 1.0, 6.0, 1.0])
    f, se = relative_factor(noisy, ref)
    assert f == pytest.approx(12 / 10) and se > 0.1
    assert relative_factor(Probe("wf", LINEAR, 1, 1.0, 0.0, 0.0, [-1.0, -1.0, 0.5, 0.5]), ref) is None


def test_held_out_windows_are_between_the_calibration_windows(tmp_path):
    write_shard(tmp_path / "train_000000.bin", np.arange(50_000))  # token value = its position
    pattern = str(tmp_path / "train_*.bin")
    calib = shard_tokens(pattern, 16, 128)
    held = shard_tokens(pattern, 16, 128, between=5)
    assert held.shape == (5, 128)
    for row in held.tolist():
        assert row == list(range(row[0], row[0] + 128))  # a contiguous window
        assert all(row[0] + 128 <= c[0] or row[0] >= c[0] + 128 for c in calib.tolist())
    assert len({r[0] for r in held.tolist()}) == 5


def test_nothing_runs_where_there_is_nothing_to_compare():
    """One calibrated family only (no other to put on its scale): no probe, no forward pass."""
    table, sd, losses, group = _setup({})
    for row in table.rows:
        row.all = [c for c in row.all if not c.method.startswith("wf")]
        row.front = pareto(row.all)
    calls = []

    def counted(state):
        calls.append(1)
        return losses(state)

    assert correct_families(table, sd, counted, group.__getitem__) == []
    assert calls == []
    full, _, _, _ = _setup({})
    assert correct_families(full, sd, counted, group.__getitem__) and calls  # with wf beside it: probed
