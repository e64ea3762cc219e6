"""The ``slices`` stored form: a bank whose slices each carry their own method decodes to the stack
of what each slice's method decodes on its own, through unpack and through the generated decoder
(which must then carry every part's method), and refuses malformed entries with one clear error."""

from __future__ import annotations

import json
import zlib

import pytest
import torch

import pgcompress
from pgcompress import format as fmt
from pgcompress.errors import FormatError, MethodError
from pgcompress.pack import assemble
from pgcompress.quant.base import QuantContext
from pgcompress.quant.slices import slice_parts, slices_encoded
from pgcompress.registry import get_method
from pgcompress.submission.decoder import build_decoder

PARTS = ["int4-rtn", "bf16", "int6-sdclip", "int2-rtn"]


def bank() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randn(len(PARTS), 48, 64, generator=g) * torch.tensor([0.1, 1.0, 0.3, 2.0])[:, None, None]


def artifact(w: torch.Tensor, methods=PARTS) -> bytes:
    encs = [get_method(m).quantize(f"b[{i}]", w[i], QuantContext()) for i, m in enumerate(methods)]
    return assemble("slices test", [("b", w, slices_encoded(encs)), ("v", torch.ones(5), get_method("fp32").quantize(
        "v", torch.ones(5), QuantContext()))], submittable=True)


def test_decodes_to_the_stack_of_each_slices_own_method():
    w = bank()
    out = pgcompress.unpack(artifact(w))["b"]
    # each slice quantized and dequantized alone, by its method, with nothing of the bank around it
    want = torch.stack([get_method(m).dequantize(get_method(m).quantize("x", w[i].clone(), QuantContext()),
                                                 (48, 64), w.dtype) for i, m in enumerate(PARTS)])
    assert out.shape == w.shape and out.dtype == w.dtype
    assert torch.equal(out, want)
    assert torch.equal(out[1], w[1].bfloat16().float())  # the bf16 slice: a plain cast, nothing else
    errs = [float((out[i] - w[i]).abs().max() / w[i].abs().max()) for i in range(len(PARTS))]
    assert errs[3] > errs[0] > errs[2] > errs[1]  # 2 bits worst, then 4, then 6, bf16 best


def test_generated_decoder_carries_every_parts_method():
    data = artifact(bank())
    src = build_decoder(data, minify=False)
    for m in ("slices", *PARTS):
        assert repr(m) in src  # in its METHODS table
    ns: dict = {}
    exec(compile(src, "decoder", "exec"), ns)
    got, want = ns["decode"](data), pgcompress.unpack(data)
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_parts_round_trip_through_the_encoded_form():
    w = bank()
    encs = [get_method(m).quantize("x", w[i], QuantContext()) for i, m in enumerate(PARTS)]
    back = slice_parts(slices_encoded(encs))
    assert [p.method for p in back] == [e.method for e in encs]
    for a, b in zip(back, encs):
        assert a.params == b.params and set(a.streams) == set(b.streams)
        assert all((a.streams[r] == b.streams[r]).all() for r in a.streams)
    with pytest.raises(MethodError):
        slices_encoded([slices_encoded(encs)])


def test_asked_for_by_name_it_refuses_with_a_way_out():
    with pytest.raises(MethodError, match="pack without --method"):
        get_method("slices").quantize("b", bank(), QuantContext())


def _rewrite(data: bytes, edit) -> bytes:
    """The artifact with its header's first tensor entry edited (streams and CRCs untouched)."""
    c = fmt.parse(data)
    header = json.loads(json.dumps(c.header))
    edit(header["tensors"][0])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    packed = zlib.compress(text, 9)
    pre = fmt.PREAMBLE.pack(fmt.MAGIC, fmt.VERSION, fmt.HEADER_CODEC_ZLIB, 0, len(packed), zlib.crc32(packed))
    return pre + packed + bytes(data[c.header_bytes:])


@pytest.mark.parametrize("edit, words", [
    (lambda t: t["params"]["parts"].pop(), "one part per slice"),
    (lambda t: t["params"].update(extra=1), "one part per slice"),
    (lambda t: t["params"]["parts"][0].update(method="slices"), "slice 0 names no method"),
    (lambda t: t["params"]["parts"][2].update(method="int9-nope"), "slice 2 names no method"),
    (lambda t: t["streams"][0].update(role="7.q"), "belongs to no slice"),
    (lambda t: t["streams"][0].update(role="q"), "belongs to no slice"),
    (lambda t: t["params"]["parts"][0]["params"].update(bits=5), "tensor 'b'"),
])
def test_malformed_entries_are_one_clear_format_error(edit, words):
    bad = _rewrite(artifact(bank()), edit)
    with pytest.raises(FormatError, match=words):
        pgcompress.unpack(bad)
    ns: dict = {}
    exec(compile(build_decoder(artifact(bank()), minify=False), "decoder", "exec"), ns)
    with pytest.raises(ValueError, match=words):  # the decoder's own FormatError, a ValueError
        ns["decode"](bad)


def test_inspect_lists_each_slice_with_its_method_and_bytes(tmp_path, capsys):
    from cli_run import run_main

    path = tmp_path / "bank.pgc"
    data = artifact(bank())
    path.write_bytes(data)
    code, out, _ = run_main(capsys, "inspect", path)
    assert code == 0
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("b "))
    assert "slices x4" in lines[at]
    sizes = {t.name: t for t in fmt.parse(data).tensors}["b"].streams
    for i, m in enumerate(PARTS):
        fields = lines[at + 1 + i].split()
        assert fields[0] == f"[{i}]" and fields[2] == m
        assert int(fields[4].replace(",", "")) == sum(s.size for s in sizes if s.role.startswith(f"{i}."))
