"""Hostile artifacts (tests/crafted.py) are refused quickly with FormatError, by the library, by
the generated submission decoder, and by the CLI (one line, exit 2)."""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import pytest

import pgcompress
from crafted import CRAFTED
from pgcompress.errors import FormatError
from pgcompress.registry import codec_names, get_codec
from pgcompress.submission.decoder import build_decoder_for

QUICK_S = 3.0


@pytest.fixture(scope="module")
def decoder_ns() -> dict:
    """A generated decoder that knows every submittable codec (unminified: the same functions)."""
    codecs = [c for c in codec_names() if get_codec(c).submittable]
    ns: dict = {}
    exec(compile(build_decoder_for(codecs, ["int8-ref", "fp16", "raw"], minify=False), "decode_artifact.py", "exec"), ns)
    return ns


@pytest.fixture(scope="module")
def crafted() -> dict[str, bytes]:
    return {name: fn() for name, fn in CRAFTED.items()}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_library_refuses_quickly(crafted, name):
    t0 = time.perf_counter()
    with pytest.raises(FormatError, match="crafted.bin"):
        pgcompress.unpack(crafted[name], "crafted.bin")
    assert time.perf_counter() - t0 < QUICK_S


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_generated_decoder_refuses_quickly(decoder_ns, crafted, name):
    t0 = time.perf_counter()
    with pytest.raises(decoder_ns["FormatError"]):
        decoder_ns["decode"](crafted[name])
    assert time.perf_counter() - t0 < QUICK_S


def test_errors_name_the_tensor_and_stream(crafted):
    with pytest.raises(FormatError, match=r"crafted.bin: tensor 'w' stream 'q'"):
        pgcompress.unpack(crafted["rans_one_lane"], "crafted.bin")


@pytest.mark.parametrize("name", ["freq_overflow", "bitpack_bomb_small", "deep_json"])
def test_cli_unpack_and_inspect_exit_2_with_one_line(tmp_path, crafted, name):
    path = tmp_path / "crafted.bin"
    path.write_bytes(crafted[name])
    for args in (["unpack", str(path), "-o", str(tmp_path / "out.pt")], ["inspect", str(path)]):
        if name != "deep_json" and args[0] == "inspect":
            continue  # the header is valid: inspect does not decode streams
        # 4 GiB of address space: a reader that believed the counts would die, not swap
        r = subprocess.run([sys.executable, "-m", "pgcompress.cli", *args], capture_output=True, text=True,
                           preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30)), timeout=120)
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "crafted.bin" in r.stderr
        assert not (tmp_path / "out.pt").exists()
