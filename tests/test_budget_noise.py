"""The eval's noise floor (pgcompress.budget.noise): nudged copies change exactly the float
matrices by the stated relative noise, sigma is the sample standard deviation (checked against
the statistics module), inversions are every rise of the gap with budget, read against the
resolution; ``pgc sweep --noise-replicates`` reports them."""

from __future__ import annotations

import json
import math
import statistics

import pytest
import torch

from pgcompress.budget.noise import NoiseFloor, inversions, nudged_copies
from test_cli_consistency import eval_args, files, help_text, run_json  # noqa: F401 - files is a fixture


def test_nudged_copies_change_only_float_matrices_by_the_relative_noise():
    g = torch.Generator().manual_seed(1)
    sd = {"w": torch.randn(400, 300, generator=g), "e": torch.randn(500, 64, generator=g).to(torch.bfloat16),
          "bank": torch.randn(3, 64, 64, generator=g), "gain": torch.ones(300), "ids": torch.arange(10)}
    a, b = nudged_copies(sd, 2, rel=1e-3, seed=7)
    again = nudged_copies(sd, 2, rel=1e-3, seed=7)
    for k in sd:
        assert a[k].dtype == sd[k].dtype and a[k].shape == sd[k].shape
        assert torch.equal(a[k], again[0][k]) and torch.equal(b[k], again[1][k])  # same seed, same copies
    assert a["gain"] is sd["gain"] and a["ids"] is sd["ids"]  # vectors and integers untouched
    rel = (a["w"] / sd["w"] - 1).flatten()
    assert abs(float(rel.std()) - 1e-3) < 0.05e-3 and abs(float(rel.mean())) < 0.05e-3
    assert not torch.equal(a["w"], b["w"]) and not torch.equal(a["bank"], sd["bank"])
    changed = (a["e"] != sd["e"]).float().mean()
    # bf16 steps are 2^-8 to 2^-7 of a value: noise of 1e-3 moves a value one step only near a
    # rounding boundary, about 1e-3 / 2^-8 / 2 of the time
    assert 0.003 < float(changed) < 0.05


def test_sigma_and_resolution_match_the_sample_standard_deviation():
    gaps = [1.2e-4, -3.0e-5, 4.1e-5, 9.0e-6, -7.7e-5, 2.2e-5]
    nf = NoiseFloor(len(gaps), 2.0 ** -12, gaps)
    assert nf.sigma == pytest.approx(statistics.stdev(gaps), rel=1e-12)
    assert nf.resolution == pytest.approx(2 * math.sqrt(2) * statistics.stdev(gaps), rel=1e-12)
    d = nf.as_dict()
    assert d["gaps"] == gaps and d["sigma"] == nf.sigma and d["replicates"] == 6


def test_inversions_are_every_rise_read_against_the_resolution():
    gaps = [(16_000_000, 1e-5), (4_000_000, 5e-3), (8_000_000, 1e-3), (12_000_000, 2e-5), (14_000_000, 3e-4)]
    inv = inversions(gaps, resolution=1e-4)
    assert inv == [{"from": 12_000_000, "to": 14_000_000, "rise": pytest.approx(2.8e-4), "beyond_noise": True}]
    inv = inversions([(1, 0.0), (2, 5e-5), (3, 4e-5)], resolution=1e-4)
    assert [(i["from"], i["to"], i["beyond_noise"]) for i in inv] == [(1, 2, False)]
    assert inversions([(1, 3e-3), (2, 2e-3), (3, 1e-3)], resolution=0.0) == []


def test_sweep_reports_its_noise_floor(files, capsys, tmp_path):
    out_dir = tmp_path / "sweep"
    info = run_json(capsys, "sweep", files / "tiny.pt", "--budgets", "70000,90000", "--uniform", "", "--out-dir",
                    out_dir, "--calib-selfgen", "2", "--calib-seq-len", "16", "--noise-replicates", "2",
                    *eval_args(files), "--max-tokens", "256")
    assert info == json.loads((out_dir / "sweep.json").read_text())
    noise = info["noise"]
    assert noise["replicates"] == 2 and len(noise["gaps"]) == 2
    assert noise["sigma"] == pytest.approx(statistics.stdev(noise["gaps"]))
    assert noise["resolution"] == pytest.approx(2 * math.sqrt(2) * noise["sigma"])
    solver = sorted((int(r["label"]), r["gap"]) for r in info["rows"] if r["kind"] == "solver")
    rises = [(b0, b1) for (b0, g0), (b1, g1) in zip(solver, solver[1:]) if g1 > g0]
    assert [(i["from"], i["to"]) for i in info["inversions"]] == rises
    assert "Eval noise:" in (out_dir / "sweep.md").read_text()
    text = help_text(capsys, "sweep")
    for key in ("noise", "replicates", "relative_noise", "sigma", "resolution", "inversions", "beyond_noise"):
        assert f'"{key}"' in text, key
