"""Bad input to every command: one line on stderr, exit code 2, nothing half-written.

Runs the CLI in-process (``main(argv)``) so that each case costs milliseconds; the few cases that
need a real process (a file-size limit) run ``python -m pgcompress.cli``.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import io
import lzma
import os
import resource
import signal
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import pgcompress
from cli_run import error_line, run_main
from conftest import REPO, reference_like_state_dict
from pgcompress.checkpoint import load_checkpoint
from pgcompress.errors import CheckpointError
from pgcompress.eval.shards import read_shard, write_shard

DATA = REPO.parent / "shared" / "data"
TOKENIZER = DATA / "tokenizers" / "fineweb_1024_bpe.model"
TOKENIZER_8192 = DATA / "tokenizers" / "fineweb_8192_bpe.model"


def one_line_error(capsys, *args) -> str:
    code, out, err = run_main(capsys, *args)
    assert code == 2, (args, err)
    assert "Traceback" not in err
    return error_line(err)


def listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    sd = reference_like_state_dict(seed=4, dim=32, layers=2, vocab=64)
    torch.save(sd, root / "good.pt")
    (root / "good.bin").write_bytes(pgcompress.pack(sd, method="int8-ref", submittable=True))
    (root / "empty.bin").write_bytes(b"")
    (root / "dir").mkdir()
    (root / "script.py").write_text("print('hi')\n")
    return root


def commands(root: Path, target: Path, out: Path) -> list[list]:
    """Every command, reading ``target`` and writing under ``out``."""
    return [["pack", target, "-o", out / "a.bin", "--method", "int8-ref"],
            ["inspect", target], ["unpack", target, "-o", out / "m.pt"], ["decoder", target, "-o", out / "d.py"],
            ["eval", target, "--data-path", root, "--tokenizer", TOKENIZER],
            ["compare", target, "--data-path", root, "--tokenizer", TOKENIZER], ["wrap", target, "-o", out / "w.py"]]


@pytest.mark.parametrize("kind", ["missing", "directory", "empty"])
def test_every_command_refuses_missing_directory_and_empty_inputs(files, capsys, tmp_path, kind):
    target = {"missing": files / "nope.bin", "directory": files / "dir", "empty": files / "empty.bin"}[kind]
    for cmd in commands(files, target, tmp_path):
        if kind == "empty" and cmd[0] == "wrap":
            continue  # an empty script is a valid (empty) Python program
        one_line_error(capsys, *cmd)
    assert listing(tmp_path) == []


def test_unreadable_file_is_one_line(files, capsys, tmp_path, monkeypatch):
    # tests may run as root, which chmod 000 does not stop: make every read fail instead
    def denied(self, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    monkeypatch.setattr(Path, "read_text", denied)
    for cmd in commands(files, files / "good.bin", tmp_path):
        err = one_line_error(capsys, *cmd)
        assert "Permission denied" in err or cmd[0] in ("eval", "compare")  # these check the data dir first
    assert listing(tmp_path) == []


def foreign_files() -> dict[str, bytes]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("notes.txt", "hello")
    rnd = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    return {"xz/lzma": lzma.compress(b"x" * 100), "lzma": lzma.compress(b"x" * 100, format=lzma.FORMAT_ALONE),
            "gzip": gzip.compress(b"x" * 100), "zlib": zlib.compress(b"x" * 100), "bzip2": bz2.compress(b"x" * 100),
            "zip archive": buf.getvalue(), "random bytes": b"\x07" + rnd, "text": b"def f():\n    return 1\n"}


@pytest.mark.parametrize("kind", list(foreign_files()))
def test_foreign_bytes_are_named_not_called_python_objects(tmp_path, kind):
    p = tmp_path / "ckpt.pt"
    p.write_bytes(foreign_files()[kind])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(p)
    msg = str(info.value)
    assert "not a checkpoint" in msg and "Python objects" not in msg
    assert {"xz/lzma": "xz", "lzma": "lzma", "gzip": "gzip", "zlib": "zlib", "bzip2": "bzip2", "zip archive": "zip",
            "random bytes": "random bytes", "text": "text"}[kind] in msg


def test_truncated_torch_checkpoint_is_named(files, tmp_path):
    data = (files / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path / "cut.pt")


def test_pickle_with_code_is_refused_and_never_run(eval_dir, capsys, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"w": Exploit()}, tmp_path / "evil.pt")
    for cmd in (["pack", tmp_path / "evil.pt", "-o", tmp_path / "a.bin", "--method", "int8-ref"],
                ["eval", tmp_path / "evil.pt", "--data-path", eval_dir, "--tokenizer", TOKENIZER, "--seq-len", "256"]):
        assert "refused" in one_line_error(capsys, *cmd)
    assert not marker.exists() and not (tmp_path / "a.bin").exists()


def test_nan_and_inf_weights_are_refused_naming_the_tensors(capsys, tmp_path):
    sd = reference_like_state_dict(seed=5, dim=32, layers=2, vocab=64)
    sd["blocks.0.attn.c_q.weight"][3, 4] = float("nan")
    sd["blocks.1.mlp.fc.weight"][0, 0] = float("-inf")
    torch.save(sd, tmp_path / "nan.pt")
    err = one_line_error(capsys, "pack", tmp_path / "nan.pt", "-o", tmp_path / "a.bin", "--method", "int8-ref")
    assert "NaN or Inf" in err and "blocks.0.attn.c_q.weight" in err and "blocks.1.mlp.fc.weight" in err
    assert listing(tmp_path) == ["nan.pt"]


def test_absurd_shapes_are_refused_before_any_work(capsys, tmp_path):
    torch.save({"w": torch.zeros([1] * 9)}, tmp_path / "deep.pt")
    assert "9 dimensions" in one_line_error(capsys, "pack", tmp_path / "deep.pt", "-o", tmp_path / "a.bin",
                                            "--method", "int8-ref")
    # 2^31 + 1 values that take 4 bytes of storage (an expanded view): refused by count, nothing allocated
    torch.save({"w": torch.zeros(1).expand(2 ** 31 + 1)}, tmp_path / "huge.pt")
    assert "values in all" in one_line_error(capsys, "pack", tmp_path / "huge.pt", "-o", tmp_path / "a.bin",
                                             "--method", "int8-ref")
    assert not (tmp_path / "a.bin").exists()


def test_zero_size_tensors_roundtrip(capsys, tmp_path):
    sd = reference_like_state_dict(seed=6, dim=32, layers=2, vocab=64)
    sd["empty.weight"] = torch.zeros(0, 32)
    sd["empty.bias"] = torch.zeros(0)
    torch.save(sd, tmp_path / "z.pt")
    code, _, err = run_main(capsys, "pack", tmp_path / "z.pt", "-o", tmp_path / "a.bin", "--method", "int8-ref")
    assert code == 0, err
    got = pgcompress.unpack((tmp_path / "a.bin").read_bytes())
    assert got["empty.weight"].shape == (0, 32) and got["empty.bias"].shape == (0,)


def test_output_in_a_missing_directory(files, capsys, tmp_path):
    missing = tmp_path / "no" / "such"
    for cmd in (["unpack", files / "good.bin", "-o", missing / "m.pt"], ["decoder", files / "good.bin", "-o", missing / "d.py"],
                ["wrap", files / "script.py", "-o", missing / "w.py"],
                ["pack", files / "good.pt", "-o", missing / "a.bin", "--method", "int8-ref"]):
        assert "does not exist" in one_line_error(capsys, *cmd)
    assert listing(tmp_path) == []


def test_full_disk_leaves_the_previous_file_and_no_temp(files, capsys, tmp_path, monkeypatch):
    (tmp_path / "m.pt").write_bytes(b"previous")
    real_write = os.write

    def full(fd, data):
        if len(data) > 100:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    for cmd in (["unpack", files / "good.bin", "-o", tmp_path / "m.pt"],
                ["decoder", files / "good.bin", "-o", tmp_path / "m.pt"]):
        assert "disk full" in one_line_error(capsys, *cmd)
        assert (tmp_path / "m.pt").read_bytes() == b"previous" and listing(tmp_path) == ["m.pt"]


def test_file_size_limit_in_a_real_process(files, tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse the write (EFBIG): exit 2, one line, no file."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))

    r = subprocess.run([sys.executable, "-m", "pgcompress.cli", "unpack", str(files / "good.bin"), "-o",
                        str(tmp_path / "m.pt")], capture_output=True, text=True, preexec_fn=limit, timeout=120, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    error_line(r.stderr)
    assert listing(tmp_path) == []


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory):
    from pgcompress.model.gpt import GPT, GPTConfig

    root = tmp_path_factory.mktemp("eval")
    write_shard(root / "fineweb_val_000000.bin", read_shard(DATA / "sp1024" / "fineweb_val_000000.bin")[:2049])
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=1024, num_layers=1, model_dim=32, num_heads=2, num_kv_heads=1, mlp_hidden=64))
    torch.save(model.state_dict(), root / "tiny.pt")
    return root


def test_tokenizer_that_does_not_match_the_model(eval_dir, capsys):
    err = one_line_error(capsys, "eval", eval_dir / "tiny.pt", "--data-path", eval_dir, "--tokenizer", TOKENIZER_8192,
                         "--seq-len", "256", "--device", "cpu")
    assert "model vocab 1024 is smaller than tokenizer" in err


def test_truncated_shard(eval_dir, capsys, tmp_path):
    data = (eval_dir / "fineweb_val_000000.bin").read_bytes()
    (tmp_path / "fineweb_val_000000.bin").write_bytes(data[:-100])
    err = one_line_error(capsys, "eval", eval_dir / "tiny.pt", "--data-path", tmp_path, "--tokenizer", TOKENIZER,
                         "--seq-len", "256", "--device", "cpu")
    assert "truncated" in err and "fineweb_val_000000.bin" in err


def test_wrap_refuses_binary_input(capsys, tmp_path):
    (tmp_path / "x.py").write_bytes(b"\xff\xfe\x00junk")
    assert "not UTF-8" in one_line_error(capsys, "wrap", tmp_path / "x.py", "-o", tmp_path / "w.py")
    assert listing(tmp_path) == ["x.py"]
