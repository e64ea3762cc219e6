"""The distortion proxy compares what the eval computes with: bf16 matrices, fp32 control tensors.

The independent check is the reference eval itself: an artifact whose matrices are stored as bf16
and whose control tensors are kept as fp32 must score exactly the raw checkpoint's val_bpb, and the
solver, given room, must find that artifact (zero predicted damage) rather than fp16 or fp32 copies.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import pgcompress
from conftest import SHARED, reference_like_state_dict
from pgcompress.budget import pack_to_budget, prepare
from pgcompress.budget.distortion import Distortion
from pgcompress.eval.runner import EvalOptions, run
from pgcompress.quant.calibration import CalibConfig

DATA = SHARED / "data"
OPTS = EvalOptions(data_path=DATA / "sp1024", tokenizer_path=DATA / "tokenizers" / "fineweb_1024_bpe.model",
                   max_tokens=4096, seq_len=256, device="cpu")
CALIB = CalibConfig(selfgen=4, seq_len=64)


@pytest.fixture(scope="module")
def sd():
    return reference_like_state_dict(seed=5, dim=64, layers=2, vocab=1024)


@pytest.fixture(scope="module")
def prepared(sd):
    return prepare(sd, CALIB)


def test_bf16_copies_of_matrices_are_exact_and_control_tensors_are_not(sd, prepared):
    dist = prepared.distortion
    for name in ("blocks.0.attn.c_q.weight", "blocks.1.mlp.proj.weight", "tok_emb.weight"):
        W = sd[name].float()
        assert dist.is_matrix(name, W)
        assert dist(name, W, W.bfloat16().float()) == 0.0
        assert dist(name, W, W.half().float()) >= 0.0
        assert dist(name, W, W + 0.01) > 0.0
    # a control tensor is used in fp32 by the eval: rounding it to bf16 is a real change
    W = sd["blocks.0.attn_scale"].float()
    assert not dist.is_matrix("blocks.0.attn_scale", W)
    assert dist("blocks.0.attn_scale", W, W.bfloat16().float()) > 0.0


def test_without_calibration_large_matrices_are_compared_in_bf16():
    dist = Distortion(None)
    big, small = torch.randn(300, 300), torch.randn(2, 64)
    assert dist("w", big, big.bfloat16().float()) == 0.0
    assert dist("mix", small, small.bfloat16().float()) > 0.0
    fp32 = Distortion(None, matrix_dtype=None)
    assert fp32("w", big, big.bfloat16().float()) > 0.0


def test_roomy_budget_gives_the_raw_checkpoints_exact_val_bpb(sd, prepared, tmp_path):
    sol = pack_to_budget(sd, 16_000_000, prepared=prepared)
    methods, restored = sol.methods, pgcompress.unpack(sol.data)
    for name, t in sd.items():
        if prepared.distortion.is_matrix(name, t):
            if t.dtype == torch.float32:  # an fp32 copy costs twice the bytes for nothing
                assert methods[name] == "bf16", (name, methods[name])  # fp16 is not exact in the eval
            assert torch.equal(restored[name].bfloat16(), t.bfloat16()), name
        else:
            assert torch.equal(restored[name].float(), t.float()), (name, methods[name])
    assert sol.predicted == 0.0
    ckpt, art = tmp_path / "raw.pt", tmp_path / "solver.pgc"
    torch.save(sd, ckpt)
    art.write_bytes(sol.data)
    raw, packed = run([ckpt, art], OPTS)
    assert raw.token_count == packed.token_count == 4096
    assert packed.val_loss == raw.val_loss and packed.val_bpb == raw.val_bpb
    # and the fp16 copy, which the fp32 view preferred, does not reproduce it bit for bit
    fp16 = tmp_path / "fp16.pgc"
    fp16.write_bytes(pgcompress.pack(sd, method=",".join(
        f"{n}={'fp16' if prepared.distortion.is_matrix(n, t) else 'raw'}" for n, t in sd.items()),
        submittable=True))
    (half,) = run([fp16], OPTS)
    assert half.val_loss != raw.val_loss
