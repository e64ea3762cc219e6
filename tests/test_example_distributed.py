"""examples/distributed/run.py: torchrun x2 (gloo, CPU) training + pack + eval, then `pgc eval` under
torchrun x2; the record's all-reduced eval and pgcompress's agree to every printed digit."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import REPO
from test_example_record import TINY, TOKENIZER, sp8192_data

RUN = REPO / "examples" / "distributed" / "run.py"


def test_torchrun_two_processes_agree(tmp_path):
    data = sp8192_data(tmp_path)
    overrides = {**TINY, "ITERATIONS": "4", "DATA_PATH": str(data), "TOKENIZER_PATH": str(TOKENIZER)}
    r = subprocess.run([sys.executable, str(RUN), "--nproc", "2", *(f"{k}={v}" for k, v in overrides.items())],
                       cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    ours = re.search(r"^train_gpt.py x2: (final_int8_zlib_roundtrip_exact .*)$", r.stdout, re.M).group(1)
    theirs = re.search(r"^pgc eval x2:\s+(final_int8_zlib_roundtrip_exact .*)$", r.stdout, re.M).group(1)
    assert ours == theirs and "agree:True" in r.stdout
    assert (tmp_path / "final_model.pgc").is_file()
