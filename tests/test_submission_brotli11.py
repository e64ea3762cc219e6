"""The generated decoder under the oldest brotli pgcompress declares (1.1, which has no
``output_buffer_limit``): bit-identical to ``unpack`` (run under the newest brotli here).

.ci/run builds build/venv-brotli11 (torch, numpy and brotli==1.1.0 only, no pgcompress) and sets
PGC_REQUIRE_BROTLI11=1, so in CI a missing venv fails instead of skipping.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

import pgcompress
from conftest import REPO, reference_like_state_dict
from crafted import brotli_bomb
from pgcompress.submission import isolated
from pgcompress.submission.decoder import build_decoder

PYTHON = Path(os.environ.get("PGC_BROTLI11_PYTHON", REPO / "build" / "venv-brotli11" / "bin" / "python"))

if not PYTHON.is_file():
    if os.environ.get("PGC_REQUIRE_BROTLI11") == "1":
        raise RuntimeError(f"{PYTHON} is missing: .ci/run builds it (torch, numpy, brotli==1.1.0)")
    pytest.skip(f"no brotli 1.1 venv at {PYTHON} (.ci/run builds it)", allow_module_level=True)


def test_the_venv_has_brotli_1_1_and_no_pgcompress():
    r = subprocess.run([str(PYTHON), "-c", "import brotli; print(brotli.__version__)\n"
                        "import importlib.util as u; print(u.find_spec('pgcompress'))"],
                       capture_output=True, text=True, check=True, cwd="/")
    assert r.stdout.split() == ["1.1.0", "None"]


@pytest.mark.parametrize("codec", ["brotli", "planes+brotli", "auto"])
def test_generated_decoder_is_bit_exact_under_brotli_1_1(codec):
    sd = reference_like_state_dict(seed=3, dim=64, layers=2, vocab=300)
    sd["tok_emb.weight"] = (torch.randn(1100, 64, generator=torch.Generator().manual_seed(0)) * 0.02).to(torch.bfloat16)
    data = pgcompress.pack(sd, method="int8-ref", codec=codec, submittable=True)
    used = {s["codec"] for t in pgcompress.read_header(data)["tensors"] for s in t["streams"]}
    assert used & {"brotli", "planes+brotli"}
    got, _ = isolated.run_isolated(build_decoder(data), data, python=str(PYTHON))
    want = pgcompress.unpack(data)
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
        assert torch.equal(got[k].view(-1).view(torch.uint8), want[k].view(-1).view(torch.uint8)), k


def test_brotli_bomb_is_refused_under_brotli_1_1():
    data = brotli_bomb()
    from pgcompress.registry import codec_names, get_codec
    from pgcompress.submission.decoder import build_decoder_for

    src = build_decoder_for([c for c in codec_names() if get_codec(c).submittable], ["int8-ref"])
    with pytest.raises(subprocess.CalledProcessError) as info:
        isolated.run_isolated(src, data, python=str(PYTHON))
    assert "decodes to more than its 64 bytes" in info.value.stderr
