"""Hostile artifacts (tests/crafted.py) are refused quickly with FormatError, by the library, by
the generated submission decoder, and by the CLI (one line, exit 2)."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

import pgcompress
from cli_run import error_line
from crafted import CRAFTED
from pgcompress.errors import FormatError
from pgcompress.registry import codec_names, get_codec
from pgcompress.submission.decoder import build_decoder_for

# How fast each is refused is a benchmark figure (bench/results/fuzz.md: slowest case), not a test.


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
    with pytest.raises(FormatError, match="crafted.bin"):
        pgcompress.unpack(crafted[name], "crafted.bin")


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_generated_decoder_refuses_quickly(decoder_ns, crafted, name):
    with pytest.raises(decoder_ns["FormatError"]):
        decoder_ns["decode"](crafted[name])


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
                           cwd=tmp_path, timeout=120,
                           preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30)))
        assert r.returncode == 2, r.stderr
        assert "crafted.bin" in error_line(r.stderr)
        assert not (tmp_path / "out.pt").exists()


def _method_level_cases() -> dict[str, bytes]:
    """Valid containers whose streams decode, but whose tensors break their method's rules: the
    decoder must refuse them like the library (it runs the same validating decode functions)."""
    import numpy as np
    import torch

    from pgcompress.pack import assemble
    from pgcompress.quant.base import Encoded, QuantContext
    from pgcompress.registry import get_method

    w = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    good = get_method("int4-rtn").quantize("w", w, QuantContext())
    lq = get_method("int4-rtn+lqer").quantize("w", w, QuantContext())
    ref = get_method("int8-ref").quantize("w", w, QuantContext())

    def one(enc: Encoded) -> bytes:
        return assemble("crafted", [("w", w, enc)], codec="zlib", submittable=True)

    def edit(enc, params=None, **streams):
        new = dict(enc.streams)
        for k, v in streams.items():
            if v is None:
                new.pop(k)
            else:
                new[k] = v
        return Encoded(enc.method, dict(enc.params, **(params or {})), new)

    q_out = good.streams["q"].copy()
    q_out[0, 0] = 100  # outside the 4-bit grid
    return {
        "codes_outside_grid": one(edit(good, q=q_out)),
        "missing_scale": one(edit(good, scale=None)),
        "short_scale": one(edit(good, scale=good.streams["scale"][:3])),
        "bits_disagree_with_name": one(edit(good, params={"bits": 6})),
        "bad_group": one(edit(good, params={"group": 48})),
        "zero_on_symmetric": one(edit(good, zero=np.zeros(8, np.int8))),
        "lqer_rank_too_big": one(edit(lq, params={"lqer_rank": 99})),
        "lqer_codes_outside": one(edit(lq, lqer_a=np.full_like(lq.streams["lqer_a"], 120))),
        "int8_ref_bad_scheme": one(edit(ref, params={"scheme": "cubes"})),
        "int8_ref_wrong_scale_count": one(edit(ref, scale=ref.streams["scale"][:5])),
        "fp16_wrong_dtype": one(Encoded("fp16", {}, {"data": w.numpy().reshape(-1)})),
    }


@pytest.mark.parametrize("name", sorted(_method_level_cases()))
def test_decoder_is_as_strict_as_the_library_on_methods(name):
    data = _method_level_cases()[name]
    with pytest.raises(FormatError, match="crafted.bin: tensor 'w'"):
        pgcompress.unpack(data, "crafted.bin")
    ns: dict = {}
    exec(compile(build_decoder_for(["zlib"], ["int4-rtn", "int4-rtn+lqer", "int8-ref", "fp16"], minify=False),
                 "decode_artifact.py", "exec"), ns)
    with pytest.raises(ns["FormatError"]) as info:
        ns["decode"](data)
    assert "bad int" not in str(info.value) and "bad fp16" not in str(info.value)  # refused by a check, not the catch-all
