"""``pgc eval`` / ``pgc compare``: output shapes, errors as one line + exit 2, and the reference
numbers of the shared checkpoint (measured with the challenge's own code, data/README.md)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_run import CHILD_CWD
from pgcompress.cli.main import main
from pgcompress.eval.shards import read_shard, write_shard
from pgcompress.model.gpt import GPT, GPTConfig

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
TOKENIZER = DATA / "tokenizers" / "fineweb_1024_bpe.model"
CKPT = DATA / "checkpoints" / "ref_sp1024_9x512.pt"

pytestmark = pytest.mark.skipif(not CKPT.exists(), reason="shared data not present")

def _cpuinfo(field: str) -> str:
    """The first /proc/cpuinfo line's value for ``field`` ("" where there is none)."""
    try:
        return next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith(field)), "")
    except OSError:
        return ""


# The reference numbers were measured on an AMD EPYC (65,536 tokens in ~22 s, which suggests native
# bf16; its flags were not recorded). CI once ran on a CPU that took 193 s for the same eval and whose
# raw val_bpb rounded to 1.8212 (at least 6.7e-5 below the reference): exact digits are asserted
# only on an AMD EPYC with avx512_bf16, bounds elsewhere.
SAME_CPU_AS_REFERENCE = _cpuinfo("model name").startswith("AMD EPYC") and "avx512_bf16" in _cpuinfo("flags").split()
LINE = re.compile(r"final_(\w+?)_roundtrip val_loss:(\d+\.\d{4}) val_bpb:(\d+\.\d{4}) eval_time:\d+ms")
EXACT = re.compile(r"final_(\w+?)_roundtrip_exact val_loss:(\d+\.\d{8}) val_bpb:(\d+\.\d{8})")


# A hang guard, not a speed test: on a CPU without native bf16 one 65,536-token eval of the shared
# checkpoint took ~180 s quiet (AMD EPYC, 2026-12-07) and over 300 s beside other work.
CHILD_TIMEOUT_S = 1800


def pgc(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pgcompress.cli", *args], cwd=CHILD_CWD, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=CHILD_TIMEOUT_S)


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def tiny_checkpoint(path: Path, vocab: int = 1024, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1, mlp_hidden=64))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if p.ndim == 1 else 0.0))
    sd = model.state_dict()
    torch.save(sd, path)
    return sd


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "data").mkdir()
    write_shard(root / "data" / "fineweb_val_000000.bin", read_shard(DATA / "sp1024" / "fineweb_val_000000.bin")[:4097])
    tiny_checkpoint(root / "tiny.pt")
    return root


def _common(root: Path) -> list[str]:
    return ["--data-path", str(root / "data"), "--tokenizer", str(TOKENIZER), "--seq-len", "256", "--device", "cpu"]


def test_reference_checkpoint_numbers_and_int8_gap(tmp_path):
    """Key test: the same digits as the challenge's own eval (CPU, bf16, first 65,536 targets)."""
    common = ["--data-path", str(DATA / "sp1024"), "--tokenizer", str(TOKENIZER), "--max-tokens", "65536",
              "--device", "cpu"]
    raw = pgc("eval", str(CKPT), *common)
    assert raw.returncode == 0, raw.stderr
    lines = raw.stdout.splitlines()
    assert lines[0] == "model_params:17059912"
    short = LINE.fullmatch(lines[1])
    assert short and short.group(1) == "raw"
    if SAME_CPU_AS_REFERENCE:
        assert lines[1].startswith("final_raw_roundtrip val_loss:3.1725 val_bpb:1.8213 ")
    else:  # the 4-decimal line, within the same bounds as the exact line below
        assert abs(float(short.group(2)) - 3.17251444) < 2e-4 and abs(float(short.group(3)) - 1.82131713) < 2.5e-4
    # Reference (data/README.md): val_loss 3.17251444, val_bpb 1.82131713, measured on an AMD EPYC CPU.
    # CPU bf16 kernels differ by instruction set (spec section 8: equality holds per device), so
    # the digits must be identical there and close on other CPUs (measured on an Intel Xeon: raw
    # +1.4e-5, int8-ref roundtrip +9.9e-5; on a CPU without native bf16 at least -6.7e-5 raw; bounds
    # 2e-4 and 3e-4, an order of magnitude below the int6 gap the eval must resolve).
    raw_bpb = float(EXACT.fullmatch(lines[2]).group(3))
    if SAME_CPU_AS_REFERENCE:
        assert lines[2] == "final_raw_roundtrip_exact val_loss:3.17251444 val_bpb:1.82131713"
    else:
        assert abs(raw_bpb - 1.82131713) < 2e-4
    assert lines[3] == f"artifact_bytes:{CKPT.stat().st_size} artifact_mb:{CKPT.stat().st_size / 1e6:.6f}"

    import pgcompress

    artifact = tmp_path / "ref.int8"
    artifact.write_bytes(pgcompress.pack(pgcompress.load_checkpoint(CKPT), method="int8-ref", codec="zlib"))
    q = pgc("eval", str(artifact), *common)
    assert q.returncode == 0, q.stderr
    m = EXACT.search(q.stdout)
    assert m and m.group(1) == "int8_ref"
    # Reference int8 + zlib roundtrip: val_bpb 1.82202888 (gap +0.000712).
    if SAME_CPU_AS_REFERENCE:
        assert m.group(3) == "1.82202888"
    else:
        assert abs(float(m.group(3)) - 1.82202888) < 3e-4
        assert abs((float(m.group(3)) - raw_bpb) - 0.00071175) < 2e-4
    assert f"artifact_bytes:{artifact.stat().st_size} " in q.stdout


def test_eval_lines_json_label(tiny, capsys):
    code, out, err = run_main(capsys, "eval", str(tiny / "tiny.pt"), *_common(tiny))
    assert code == 0, err
    lines = out.splitlines()
    n_params = sum(v.numel() for v in torch.load(tiny / "tiny.pt", weights_only=True).values())
    assert lines[0] == f"model_params:{n_params}"
    assert LINE.fullmatch(lines[1]).group(1) == "raw"
    loss, bpb = EXACT.fullmatch(lines[2]).group(2, 3)
    assert re.fullmatch(r"artifact_bytes:\d+ artifact_mb:\d+\.\d{6}", lines[3])

    code, out, _ = run_main(capsys, "eval", str(tiny / "tiny.pt"), *_common(tiny), "--json", "--label", "my-run")
    result = json.loads(out)
    assert result["name"] == "final_my_run_roundtrip" and result["token_count"] == 4096
    assert f"{result['val_loss']:.8f}" == loss and f"{result['val_bpb']:.8f}" == bpb


def test_env_paths_honoured(tiny):
    env = {"DATA_PATH": str(tiny / "data"), "TOKENIZER_PATH": str(TOKENIZER)}
    r = pgc("eval", str(tiny / "tiny.pt"), "--seq-len", "256", "--device", "cpu", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["token_count"] == 4096
    r = pgc("eval", str(tiny / "tiny.pt"), "--device", "cpu", env={**env, "DATA_PATH": str(tiny / "nowhere")})
    assert r.returncode == 2 and "nowhere" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_sliding_window_is_labelled(tiny, capsys):
    code, out, err = run_main(capsys, "eval", str(tiny / "tiny.pt"), *_common(tiny), "--stride", "64")
    assert code == 0, err
    assert re.search(r"^final_raw_roundtrip_sliding_window val_loss:\S+ val_bpb:\S+ stride:64 eval_time:\d+ms$", out, re.M)
    assert "final_raw_roundtrip_sliding_window_exact" in out and "final_raw_roundtrip val_loss" not in out


def test_compare_table(tiny, capsys):
    other = tiny / "other.pt"
    tiny_checkpoint(other, seed=1)
    code, out, err = run_main(capsys, "compare", str(tiny / "tiny.pt"), str(other), *_common(tiny), "--json")
    assert code == 0, err
    a, b = json.loads(out)
    assert a["gap_bpb"] == 0 and b["gap_bpb"] == pytest.approx(b["val_bpb"] - a["val_bpb"])
    code, out, _ = run_main(capsys, "compare", str(tiny / "tiny.pt"), str(other), *_common(tiny))
    assert "tiny.pt" in out and f"{b['val_bpb'] - a['val_bpb']:+.6f}" in out


def _one_line_error(capsys, *args) -> str:
    code, out, err = run_main(capsys, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("pgc: error:")
    return err


@pytest.mark.parametrize("damage,match", [
    ("missing", "missing blocks.1.attn.c_q.weight"),
    ("extra", "unexpected blocks.0.attn.bias"),
    ("misshaped", "misshaped blocks.1.mlp.fc.weight (65, 32) (model wants (64, 32))"),
])
def test_strict_loading_errors(tiny, capsys, tmp_path, damage, match):
    sd = torch.load(tiny / "tiny.pt", weights_only=True)
    if damage == "missing":
        del sd["blocks.1.attn.c_q.weight"]
    elif damage == "extra":
        sd["blocks.0.attn.bias"] = torch.zeros(32)
    else:
        sd["blocks.1.mlp.fc.weight"] = torch.zeros(65, 32)
    torch.save(sd, tmp_path / "bad.pt")
    assert match in _one_line_error(capsys, "eval", str(tmp_path / "bad.pt"), *_common(tiny))


def test_vocab_larger_than_tokenizer(tiny, capsys, tmp_path):
    tiny_checkpoint(tmp_path / "big.pt", vocab=2048)
    err = _one_line_error(capsys, "eval", str(tmp_path / "big.pt"), *_common(tiny))
    assert "model vocab 2048 is larger than tokenizer" in err


def test_shard_shorter_than_one_sequence(tiny, capsys, tmp_path):
    (tmp_path / "short").mkdir()
    write_shard(tmp_path / "short" / "fineweb_val_000000.bin", np.arange(200))
    err = _one_line_error(capsys, "eval", str(tiny / "tiny.pt"), *_common(tiny), "--data-path", str(tmp_path / "short"))
    assert "fewer than one sequence of 256" in err


def test_missing_and_foreign_files(tiny, capsys, tmp_path):
    assert "no such file" in _one_line_error(capsys, "eval", str(tmp_path / "none.pt"), *_common(tiny))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    _one_line_error(capsys, "eval", str(tmp_path / "junk.pt"), *_common(tiny))
