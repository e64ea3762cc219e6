"""Shard reader: the challenge format, and clear errors for anything else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pgcompress.errors import DataError
from pgcompress.eval.shards import load_val_tokens, read_shard, write_shard

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _raw_shard(path: Path, tokens, magic=20240520, version=1, n=None) -> None:
    header = np.zeros(256, dtype="<i4")
    header[:3] = (magic, version, len(tokens) if n is None else n)
    path.write_bytes(header.tobytes() + np.asarray(tokens, dtype="<u2").tobytes())


def test_roundtrip_and_layout(tmp_path):
    toks = np.array([1, 5, 65535, 0, 42], dtype=np.uint16)
    write_shard(tmp_path / "s.bin", toks)
    raw = (tmp_path / "s.bin").read_bytes()
    assert len(raw) == 1024 + 2 * 5
    assert np.frombuffer(raw[:12], "<i4").tolist() == [20240520, 1, 5]
    assert read_shard(tmp_path / "s.bin").tolist() == toks.tolist()


def test_val_files_sorted_and_concatenated(tmp_path):
    _raw_shard(tmp_path / "fineweb_val_000001.bin", [7, 8, 9])
    _raw_shard(tmp_path / "fineweb_val_000000.bin", [1, 2, 3, 4])
    _raw_shard(tmp_path / "fineweb_train_000000.bin", [99] * 10)  # must be ignored
    tokens = load_val_tokens(tmp_path, seq_len=3)
    # 7 tokens -> 6 targets -> usable 6 -> tokens[:7]
    assert tokens.tolist() == [1, 2, 3, 4, 7, 8, 9]
    assert load_val_tokens(tmp_path, seq_len=4).tolist() == [1, 2, 3, 4, 7]


def test_max_tokens_cuts_before_usable(tmp_path):
    _raw_shard(tmp_path / "fineweb_val_000000.bin", list(range(100)))
    assert load_val_tokens(tmp_path, seq_len=10, max_tokens=35).tolist() == list(range(31))
    assert load_val_tokens(tmp_path, seq_len=10, max_tokens=40).tolist() == list(range(41))


@pytest.mark.parametrize(
    "kind,match",
    [
        ("truncated", "truncated"),
        ("extra", "truncated or corrupt"),
        ("magic", "not a token shard"),
        ("version", "version 2"),
        ("tiny", "shorter than the 1024-byte"),
    ],
)
def test_bad_shards(tmp_path, kind, match):
    p = tmp_path / "fineweb_val_000000.bin"
    if kind == "truncated":
        _raw_shard(p, range(10), n=20)
    elif kind == "extra":
        _raw_shard(p, range(10), n=5)
    elif kind == "magic":
        _raw_shard(p, range(10), magic=12345)
    elif kind == "version":
        _raw_shard(p, range(10), version=2)
    else:
        p.write_bytes(b"hello")
    with pytest.raises(DataError, match=match) as exc:
        load_val_tokens(tmp_path, seq_len=4)
    assert str(p) in str(exc.value)


def test_missing_dir_and_files(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        load_val_tokens(tmp_path / "nope", 4)
    with pytest.raises(DataError, match="no fineweb_val"):
        load_val_tokens(tmp_path, 4)


def test_shorter_than_one_sequence(tmp_path):
    _raw_shard(tmp_path / "fineweb_val_000000.bin", range(1024))  # 1023 targets
    with pytest.raises(DataError, match="fewer than one sequence of 1024"):
        load_val_tokens(tmp_path, 1024)
    assert load_val_tokens(tmp_path, 1023).numel() == 1024


@pytest.mark.skipif(not DATA.exists(), reason="shared data not present")
def test_real_shards():
    assert read_shard(DATA / "sp1024" / "fineweb_val_000000.bin").size == 1_001_881
    assert read_shard(DATA / "sp8192" / "fineweb_val_000000.bin").size == 500_181
    tokens = load_val_tokens(DATA / "sp1024", 1024)
    assert tokens.numel() == (1_001_880 // 1024) * 1024 + 1
