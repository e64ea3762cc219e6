"""The generated decoder: self-contained, and bit-identical to ``unpack`` for what it decodes."""

from __future__ import annotations


import numpy as np
import pytest
import torch

import pgcompress
from coding_helpers import matrix_info
from conftest import reference_like_state_dict
from pgcompress import format as fmt
from pgcompress.coding.base import stream_info_for
from pgcompress.errors import PgcError
from pgcompress.quant.base import QuantContext
from pgcompress.registry import get_codec
from pgcompress.submission import isolated
from pgcompress.submission.decoder import build_decoder



def random_hessians(sd: dict) -> QuantContext:
    """A Hessian X^T X from random activations for every matrix (GPTQ needs calibration)."""
    g = torch.Generator().manual_seed(0)
    hs = {}
    for name, w in sd.items():
        if w.ndim == 2:
            x = torch.randn(4 * w.shape[1], w.shape[1], generator=g)
            hs[name] = x.T @ x
    return QuantContext(hessians=hs)


def run_isolated(tmp_path, src: str, data: bytes) -> dict:
    """The decoder run where pgcompress, zstandard and the minifier cannot be imported."""
    return isolated.run_isolated(src, data)[0]


def assert_same_state(a: dict, b: dict):
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k].view(-1).view(torch.uint8), b[k].contiguous().view(-1).view(torch.uint8)), k


def test_generated_decoder_matches_unpack_without_pgcompress(tmp_path):
    sd = reference_like_state_dict(seed=1, dim=64, layers=2, vocab=300)
    sd["tok_emb.weight"] = (torch.randn(1100, 64) * 0.02).to(torch.bfloat16)  # over 65,536: quantized
    data = pgcompress.pack(sd, method="int8-ref", submittable=True)
    src = build_decoder(data)
    assert "import pgcompress" not in src and "from pgcompress" not in src and "zstandard" not in src
    assert_same_state(run_isolated(tmp_path, src, data), pgcompress.unpack(data))


def handmade_artifact(codec_for_q: str) -> bytes:
    """One int8-ref matrix whose codes use ``codec_for_q`` (rans-ctx2 needs the matrix shape)."""
    rng = np.random.default_rng(0)
    w = torch.from_numpy(rng.normal(size=(96, 80)).astype(np.float32) * np.exp(rng.normal(0, .5, (1, 80))).astype(np.float32))
    enc = pgcompress.registry.get_method("int8-ref").quantize("w", w, None)
    q2d = enc.streams["q"].reshape(96, 80)
    streams, blobs = [], []
    for role, arr in enc.streams.items():
        info = stream_info_for(arr)
        codec = codec_for_q if role == "q" else "planes+brotli"
        blob = get_codec(codec).encode(arr, matrix_info(q2d) if codec.startswith("rans-ctx") else info)
        streams.append(fmt.stream_entry(role, info, codec, blob))
        blobs.append(blob)
    entry = {"name": "w", "shape": [96, 80], "dtype": "float32", "method": enc.method,
             "params": enc.params, "streams": streams}
    return fmt.build({"label": "test"}, [entry], blobs)


@pytest.mark.parametrize("codec", ["rans-ctx2", "rans", "bitpack", "lzma"])
def test_every_submittable_codec_decodes_in_the_generated_module(codec):
    data = handmade_artifact(codec)
    src = build_decoder(data, minify=False)
    ns = {}
    exec(compile(src, "d.py", "exec"), ns)
    assert set(ns["CODECS"]) == {codec, "planes+brotli"}  # only what the artifact uses
    assert_same_state(ns["decode"](data), pgcompress.unpack(data))


def test_non_submittable_codec_is_refused():
    data = handmade_artifact("zstd")
    with pytest.raises(PgcError, match="cannot decode"):
        build_decoder(data)


def test_generated_decoder_rejects_a_corrupt_artifact():
    data = bytearray(handmade_artifact("rans"))
    data[-5] ^= 0xFF
    ns = {}
    exec(compile(build_decoder(bytes(data[:-5]) + bytes(handmade_artifact("rans")[-5:])), "d.py", "exec"), ns)
    with pytest.raises(ns["CodecError"]):
        ns["decode"](bytes(data))


@pytest.mark.parametrize("method", ["int6-gptq", "int5-rtn-g64", "int4-clip-asym-bf16", "int5-rtn+lqer",
                                    "int6-rtn,tok_emb.weight=int8-ref,blocks.0.*=fp16"])
def test_generated_decoder_handles_grid_methods(tmp_path, method):
    sd = reference_like_state_dict(seed=2, dim=128, layers=2, vocab=600)
    data = pgcompress.pack(sd, method=method, submittable=True, context=random_hessians(sd))
    assert_same_state(run_isolated(tmp_path, build_decoder(data), data), pgcompress.unpack(data))


def test_every_submittable_codec_is_in_the_decoder_table():
    """One table: the decoder's codecs come from the registry, so none can be missing from it."""
    from pgcompress.registry import codec_names
    from pgcompress.submission.decoder import build_decoder_for

    submittable = [c for c in codec_names() if get_codec(c).submittable]
    assert {"raw", "zlib", "lzma", "brotli", "planes+brotli", "planes+lzma", "bitpack", "rans", "rans-ctx2"} <= set(submittable)
    ns = {}
    exec(compile(build_decoder_for(submittable, ["int8-ref"]), "d.py", "exec"), ns)
    assert set(ns["CODECS"]) == set(submittable)
    for c in submittable:  # the library decodes with the very function the decoder copies
        assert ns["CODECS"][c].__name__ == get_codec(c).decode_fn.__name__


def test_decoder_carries_the_library_walk_verbatim():
    import inspect

    from pgcompress.submission.decoder import build_decoder_for

    src = build_decoder_for(["raw"], ["fp16"], minify=False)
    for fn in (fmt.read_container, fmt.check_stream_entry, fmt.check_tensor_entry, fmt.decode_stream_entry,
               fmt.dequantize_entry, fmt.load_header_json):
        assert inspect.getsource(fn) in src, fn.__name__
    assert "__name__ =" not in src


def test_memoised_minify_gives_what_python_minifier_gives_for_each_source():
    """The solver builds a decoder per artifact it writes; the minified text is memoised by source:
    each source must still get its own minification, the same as python-minifier's."""
    import python_minifier

    from pgcompress.submission.decoder import build_decoder_for

    for codecs, methods in ((["raw"], ["fp16"]), (["zlib"], ["fp16"]), (["raw"], ["fp16"]), (["raw"], ["int8-ref"])):
        src = build_decoder_for(codecs, methods, minify=False)
        direct = python_minifier.minify(src, remove_literal_statements=True, rename_globals=False)
        assert build_decoder_for(codecs, methods) == direct
    assert build_decoder_for(["raw"], ["fp16"]) != build_decoder_for(["zlib"], ["fp16"])


def test_rans_ctx2_artifact_decodes_in_a_child_process(tmp_path):
    """A whole artifact whose code matrices use rans-ctx2 (ragged, single-symbol and all-equal
    columns included), decoded by the generated module where pgcompress cannot be imported."""
    sd = reference_like_state_dict(seed=3, dim=64, layers=1, vocab=300)
    w = torch.randn(1031, 64) * 0.02  # 1031 rows (prime): over 65,536 values, so quantized
    w[:, ::4] = 0.0  # all-equal columns
    sd["tok_emb.weight"] = w.to(torch.bfloat16)
    data = pgcompress.pack(sd, method="int6-rtn", codec="rans-ctx2", submittable=True)
    codecs = {s.codec for t in fmt.parse(data, "t").tensors for s in t.streams}
    assert "rans-ctx2" in codecs
    assert_same_state(run_isolated(tmp_path, build_decoder(data), data), pgcompress.unpack(data))
    q = np.full((300, 220), 3, dtype=np.int8)  # a single-symbol matrix in the generated decoder
    ns = {}
    exec(compile(build_decoder(data, minify=False), "d.py", "exec"), ns)
    blob = get_codec("rans-ctx2").encode(q.reshape(-1), matrix_info(q))
    out = ns["CODECS"]["rans-ctx2"](blob, "int8", q.size, 3, 3)
    assert np.array_equal(out, q.reshape(-1))
    with pytest.raises(ns["CodecError"]):
        ns["CODECS"]["rans-ctx2"](blob[:-1], "int8", q.size, 3, 3)
    from test_coding_rans_ctx2 import hostile  # the library's hostile headers, in the generated decoder

    for kwargs in ({"k": 65, "us": (16,) * 65}, {"side": (1 << 40, 0, 16, 3, 1, 0, 16, 3)}, {"tail": 17},
                   {"lanes": 5000}, {"r": 5}):
        with pytest.raises(ns["CodecError"]):
            ns["CODECS"]["rans-ctx2"](hostile(**kwargs), "int8", 16, -3, 3)


def test_rans_ctx2_centres_artifact_decodes_in_a_child_process(tmp_path):
    """A whole artifact whose code matrices use rans-ctx2 with centres (columns shifted by up to
    +-3 steps, all-equal columns), decoded where pgcompress cannot be imported; the library's
    hostile headers raise in the generated decoder too."""
    sd = reference_like_state_dict(seed=4, dim=64, layers=1, vocab=300)
    w = torch.randn(1031, 64) * 0.02 + torch.linspace(-0.04, 0.04, 64)[None, :]  # column offsets
    w[:, ::5] = 0.0
    sd["tok_emb.weight"] = w.to(torch.bfloat16)
    data = pgcompress.pack(sd, method="int6-rtn", codec="rans-ctx2", submittable=True)
    codecs = {s.codec for t in fmt.parse(data, "t").tensors for s in t.streams}
    assert "rans-ctx2" in codecs
    assert_same_state(run_isolated(tmp_path, build_decoder(data), data), pgcompress.unpack(data))
    ns = {}
    exec(compile(build_decoder(data, minify=False), "d.py", "exec"), ns)
    from test_coding_rans_ctx2_centres import HOSTILE, centre_mode, hostile, offset_matrix

    q, _ = offset_matrix(5, 200, 96, row_sd=1.0)
    blob = get_codec("rans-ctx2").encode(q.reshape(-1), matrix_info(q))
    assert centre_mode(blob) != 0
    lo, hi = int(q.min()), int(q.max())
    assert np.array_equal(ns["CODECS"]["rans-ctx2"](blob, "int8", q.size, lo, hi), q.reshape(-1))
    with pytest.raises(ns["CodecError"]):
        ns["CODECS"]["rans-ctx2"](blob[:-1], "int8", q.size, lo, hi)
    with pytest.raises(ns["CodecError"]):
        ns["CODECS"]["rans-ctx2"](blob, "int8", q.size, lo + 1, hi)
    for kwargs, _ in HOSTILE:
        with pytest.raises(ns["CodecError"]):
            ns["CODECS"]["rans-ctx2"](hostile(**kwargs), "int8", 16, -3, 3)
