"""examples/autoresearch/step.py: three loop steps on the tiny record-style run (keep, discard, crash)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

from conftest import REPO
from test_example_record import TINY, TOKENIZER, sp8192_data

STEP = REPO / "examples" / "autoresearch" / "step.py"
FAST = {**TINY, "ITERATIONS": "4", "VAL_TOKENS": "4096", "PGC_METHOD": "int8-ref"}


def step(cwd, env, description, *overrides):
    return subprocess.run([sys.executable, str(STEP), "--description", description, "--reasoning", "test\tstep",
                           *overrides], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_three_steps_keep_discard_crash(tmp_path):
    data = sp8192_data(tmp_path)
    env = {**os.environ, **FAST, "DATA_PATH": str(data), "TOKENIZER_PATH": str(TOKENIZER)}
    first = step(tmp_path, env, "baseline")
    assert first.returncode == 0, first.stderr[-2000:]
    lines = first.stdout.splitlines()
    # what `grep "val_bpb\|final_int8_zlib_roundtrip\|model_params" run.log` finds is printed
    log = (tmp_path / "run.log").read_text().splitlines()
    grepped = [line for line in log if any(k in line for k in ("val_bpb", "final_int8_zlib_roundtrip", "model_params"))]
    assert grepped and lines[: len(grepped)] == grepped
    again = step(tmp_path, env, "same again")  # the same run: not lower than the best keep
    assert again.returncode == 0, again.stderr[-2000:]
    crash = step(tmp_path, env, "broken", "NUM_LAYERS=two")
    assert crash.returncode == 1
    with (tmp_path / "results.tsv").open(newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["commit", "val_bpb", "artifact_mb", "status", "reasoning", "description"]
    assert [r[3] for r in rows[1:]] == ["keep", "discard", "crash"]
    assert all(len(r) == 6 for r in rows)
    assert rows[1][1] == rows[2][1] and float(rows[1][1]) > 0 and float(rows[3][1]) == 0
    assert 0 < float(rows[1][2]) < 16 and rows[1][4] == "test step"
    bpb = next(line for line in grepped if line.startswith("final_int8_zlib_roundtrip_exact")).split("val_bpb:")[1]
    assert rows[1][1] == bpb
