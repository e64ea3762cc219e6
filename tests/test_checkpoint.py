"""Checkpoint input: plain, wrapped, safetensors, reference .ptz; anything else is a clear error."""

from __future__ import annotations

import io
import os
import pickle
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import reference_like_state_dict
from pgcompress import load_checkpoint
from pgcompress.errors import CheckpointError
from spec_int8 import export_import, reference_payload


def same(a, b):
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def sd():
    return reference_like_state_dict(seed=4)


def test_plain_and_wrapped(tmp_path, sd):
    for i, obj in enumerate([sd, {"model": sd, "step": 3}, {"state_dict": sd}]):
        p = tmp_path / f"c{i}.pt"
        torch.save(obj, p)
        assert same(load_checkpoint(p), sd)


def test_ddp_and_compile_prefixes_are_stripped(tmp_path, sd):
    p = tmp_path / "c.pt"
    torch.save({f"module._orig_mod.{k}": v for k, v in sd.items()}, p)
    assert same(load_checkpoint(p), sd)


def test_safetensors(tmp_path, sd):
    p = tmp_path / "m.safetensors"
    save_file(sd, p)
    got = load_checkpoint(p)  # safetensors does not keep insertion order
    assert same(dict(sorted(got.items())), dict(sorted(sd.items())))


def test_reference_ptz_is_dequantized_like_the_reference(tmp_path):
    sd = reference_like_state_dict(seed=4, dim=256, layers=2, vocab=300)
    buf = io.BytesIO()
    torch.save(reference_payload(sd), buf)
    p = tmp_path / "final_model.int8.ptz"
    p.write_bytes(zlib.compress(buf.getvalue(), 9))
    # the reference's loader returns quantized tensors first, then passthrough ones
    got = load_checkpoint(p)
    assert same(dict(sorted(got.items())), dict(sorted(export_import(sd).items())))


class Exploit:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_pickle_with_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "x": Exploit(marker)}, p)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(p)
    assert not marker.exists()
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(Exploit(marker)))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not marker.exists()


@pytest.mark.parametrize("content,match", [
    (b"", "the file is empty, not a checkpoint"),
    (b"hello world, not a checkpoint", "not a checkpoint: it looks like a text file"),
])
def test_foreign_files(tmp_path, content, match):
    p = tmp_path / "x.pt"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(p)


def test_non_tensor_entries_and_missing_file(tmp_path):
    p = tmp_path / "c.pt"
    torch.save({"w": torch.zeros(2), "lr": 0.1}, p)
    with pytest.raises(CheckpointError, match="'lr' is not a tensor"):
        load_checkpoint(p)
    torch.save([torch.zeros(2)], p)
    with pytest.raises(CheckpointError, match="found list"):
        load_checkpoint(p)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(Path(tmp_path / "missing.pt"))
