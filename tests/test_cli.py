"""The pgc CLI: pack/inspect/unpack/methods, byte accounting, one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import pgcompress
from cli_run import CHILD_CWD, error_line, run_main
from conftest import reference_like_state_dict


def pgc(*args, cwd=None):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PGC_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "pgcompress.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd or CHILD_CWD, env=env, timeout=300)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    p = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save(reference_like_state_dict(seed=8, dim=256, layers=2, vocab=300), p)
    return p


def test_pack_inspect_unpack(ckpt, tmp_path):
    code = tmp_path / "train_gpt.py"
    code.write_text("print('hi')\r\n# caf\u00e9\n", encoding="utf-8", newline="")
    out = tmp_path / "a.bin"
    r = pgc("pack", ckpt, "-o", out, "--code", code, "--method", "int8-ref", "--codec", "zlib",
            "--submission", "import")
    assert r.returncode == 0, r.stderr
    size = out.stat().st_size
    # challenge rule: code read as text (CRLF -> LF) then UTF-8 encoded
    code_bytes = len("print('hi')\n# caf\u00e9\n".encode())
    assert f"code_bytes:{code_bytes} model_bytes:{size} total_bytes:{code_bytes + size}" in r.stdout

    r = pgc("inspect", out, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["totals"]["total_bytes"] == size
    assert {t["name"] for t in info["tensors"]} == set(torch.load(ckpt, weights_only=True))
    assert sum(t["bytes"] for t in info["tensors"]) + info["totals"]["header_bytes"] == size
    r = pgc("inspect", out)
    assert r.returncode == 0 and "blocks.0.mlp.fc.weight" in r.stdout and f"total_bytes:{size}" in r.stdout

    st = tmp_path / "m.safetensors"
    pt = tmp_path / "m.pt"
    assert pgc("unpack", out, "-o", st).returncode == 0
    assert pgc("unpack", out, "-o", pt).returncode == 0
    want = pgcompress.unpack(out.read_bytes())
    for got in (load_file(st), torch.load(pt, weights_only=True)):
        assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_inspect_columns_line_up_on_rows_with_several_codecs(tmp_path, capsys):
    """Every row's cells start (text) or end (numbers) at the header's offsets, however long a
    method name or a row's codec list is."""
    sd = reference_like_state_dict(seed=1, dim=128, layers=2, vocab=128)
    spec = "int8-ref,blocks.0.mlp.*=int4-sdclip-g64-asym,blocks.1.attn.c_q.weight=int5-rtn+lqer-r4"
    out = tmp_path / "mixed.pgc"
    out.write_bytes(pgcompress.pack(sd, method=spec))
    code, text, err = run_main(capsys, "inspect", out)
    assert code == 0, err
    lines = text.splitlines()[:-1]  # the last line is the grep-able totals
    assert len(lines) == 1 + len(sd)
    cells = [[(m.start(), m.end()) for m in re.finditer(r"\S+", line)] for line in lines]
    assert all(len(c) == 7 for c in cells), lines  # no cell holds a space: 7 cells per row
    header = cells[0]
    for line, row in zip(lines[1:], cells[1:]):
        assert [start for start, _ in row[:5]] == [start for start, _ in header[:5]], line
        assert [end for _, end in row[5:]] == [end for _, end in header[5:]], line
    # the case that used to break the layout: a row with several codecs, longer than the old column
    codecs = [line.split()[4] for line in lines[1:]]
    assert max(len(c) for c in codecs if "," in c) > 16


WARN_THEN_RUN = """
import sys, warnings
import click
from pgcompress.cli.main import cli, main
from pgcompress.errors import PgcWarning

@cli.command("warn")
def warn():
    warnings.warn("--model-code x.py: module global(s) BOS_ID are None", PgcWarning)
    warnings.warn("someone else's warning", UserWarning)
    click.echo("done")

main(sys.argv[1:])
"""


def test_pgcompress_warnings_are_one_line_without_the_source_echo():
    """In a real process, where Python would print 'file:line: Category: message' plus the source line."""
    r = subprocess.run([sys.executable, "-c", WARN_THEN_RUN, "warn"], capture_output=True, text=True, timeout=120,
                       cwd=CHILD_CWD)
    assert r.returncode == 0 and r.stdout == "done\n", r.stderr
    err = r.stderr.splitlines()
    assert err[0] == "pgc: warning: --model-code x.py: module global(s) BOS_ID are None"
    assert not any("PgcWarning" in line or "warnings.warn" in line for line in err), err
    # other libraries' warnings keep Python's own format
    assert any("UserWarning: someone else's warning" in line for line in err[1:]), err


def test_weight_mse_fallback_names_model_code_once():
    from pgcompress.budget import prepare

    sd = {"encoder.weight": torch.randn(64, 64), "decoder.weight": torch.randn(64, 64)}
    what = prepare(sd).calibration
    assert what.startswith("weight-space MSE") and what.count("--model-code") == 1, what


def test_budget_miss_reports_and_writes_nothing(ckpt, tmp_path):
    out = tmp_path / "a.bin"
    r = pgc("pack", ckpt, "-o", out, "--budget", 100000, "--method", "int8-ref", "--codec", "zlib")
    assert r.returncode == 2
    assert "over the budget" in error_line(r.stderr) and "Traceback" not in r.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_budget_is_strict(ckpt, tmp_path):
    size = len(pgcompress.pack(torch.load(ckpt, weights_only=True), codec="zlib"))
    args = ("--method", "int8-ref", "--codec", "zlib", "--submission", "import")
    assert pgc("pack", ckpt, "-o", tmp_path / "a.bin", "--budget", size, *args).returncode == 2
    assert pgc("pack", ckpt, "-o", tmp_path / "a.bin", "--budget", size + 1, *args).returncode == 0


@pytest.mark.parametrize("damage", ["magic", "truncate", "flip"])
def test_damaged_artifact_one_line_exit_2(ckpt, tmp_path, damage):
    out = tmp_path / "a.bin"
    assert pgc("pack", ckpt, "-o", out, "--method", "int8-ref", "--codec", "zlib").returncode == 0
    data = bytearray(out.read_bytes())
    if damage == "magic":
        data[:4] = b"XXXX"
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    for cmd in (["inspect", out], ["unpack", out, "-o", tmp_path / "m.pt"]):
        r = pgc(*cmd)
        if damage == "flip" and cmd[0] == "inspect":
            assert r.returncode == 0  # inspect reads only the header; the flipped byte is in a stream
            continue
        assert r.returncode == 2, (cmd, r.stderr)
        error_line(r.stderr)
    assert not (tmp_path / "m.pt").exists()


def test_pickle_checkpoint_refused_nothing_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    p = tmp_path / "evil.pt"
    torch.save({"w": Exploit()}, p)
    r = pgc("pack", p, "-o", tmp_path / "a.bin")
    assert r.returncode == 2 and "refused" in r.stderr and "Traceback" not in r.stderr
    assert not marker.exists() and not (tmp_path / "a.bin").exists()


def test_debug_shows_traceback_and_usage_errors(tmp_path):
    p = tmp_path / "x.pt"
    p.write_bytes(b"junk")
    r = pgc("--debug", "pack", p, "-o", tmp_path / "a.bin")
    assert r.returncode == 2 and "Traceback" in r.stderr
    r = pgc("pack", p, "-o", tmp_path / "a.bin", "--method", "int9-nope")
    assert r.returncode == 2 and "unknown method" in r.stderr
    assert pgc("pack").returncode == 2


def test_methods_lists_int8_ref():
    r = pgc("methods")
    assert r.returncode == 0 and "int8-ref" in r.stdout and "fp16" in r.stdout


def test_total_counts_the_decoder_as_it_will_be_pasted(ckpt, tmp_path):
    from pgcompress.submission.decoder import build_decoder
    from pgcompress.submission.wrap import wrap_source

    raw = tmp_path / "train_gpt.py"
    raw.write_text("import os\nprint(os.getcwd())\n" * 50)
    wrapped = tmp_path / "wrapped.py"
    wrapped.write_text(wrap_source(raw.read_text()).text)
    for code, form in ((raw, "raw"), (wrapped, "wrapped")):
        r = pgc("pack", ckpt, "-o", tmp_path / "a.bin", "--code", code, "--method", "int8-ref", "--json")
        assert r.returncode == 0, r.stderr
        info = json.loads(r.stdout)
        decoder = build_decoder((tmp_path / "a.bin").read_bytes())
        assert info["code_form"] == form
        assert info["total_bytes"] == info["code_bytes"] + (tmp_path / "a.bin").stat().st_size
        if form == "raw":  # pasted as it is: code + decoder + a newline
            assert info["code_bytes"] == len(code.read_bytes()) + len(decoder.encode()) + 1
        else:  # wrapped together: what wrapping the source with the decoder appended weighs
            both = wrap_source(raw.read_text() + "\n" + decoder)
            assert info["code_bytes"] == both.counted_bytes
            assert len(code.read_bytes()) < info["code_bytes"] < len(code.read_bytes()) + len(decoder.encode())
