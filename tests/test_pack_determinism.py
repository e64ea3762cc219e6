"""The same checkpoint and options give byte-identical artifacts across runs and across 1 vs 2
torch threads, GPTQ with self-generated calibration included (each run a fresh process)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import torch

from cli_run import CHILD_CWD
from pgcompress.model.gpt import GPT, GPTConfig

RUN = ("import sys, torch; torch.set_num_threads(int(sys.argv[1])); "
       "from pgcompress.cli.main import main; main(sys.argv[2:])")


def pack_in_child(threads: int, ckpt, out, *options) -> bytes:
    r = subprocess.run([sys.executable, "-c", RUN, str(threads), "pack", str(ckpt), "-o", str(out), *options],
                       capture_output=True, text=True, cwd=CHILD_CWD, timeout=600)
    assert r.returncode == 0, r.stderr
    return out.read_bytes()


def test_gptq_selfgen_pack_is_byte_identical_across_runs_and_threads(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, num_layers=2, model_dim=64, num_heads=2, num_kv_heads=1, mlp_hidden=128))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    options = ["--method", "int6-gptq", "--calib-selfgen", "4", "--calib-seq-len", "64", "--budget", "100000000"]
    runs = [pack_in_child(t, tmp_path / "m.pt", tmp_path / f"a{i}.bin", *options) for i, t in enumerate((1, 2, 1))]
    digests = [hashlib.sha256(r).hexdigest() for r in runs]
    assert digests[0] == digests[1] == digests[2], digests
