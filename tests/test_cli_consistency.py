"""Every ``pgc`` command behaves alike: --help with an example line and its JSON keys, --json that
prints one JSON value matching what the command did, range-checked numbers (exit 2, one line
naming the option and the range), --quiet wherever there is progress.

Runs the CLI in-process (``main(argv)``) on tiny files made here.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import types
from pathlib import Path

import click
import pytest
import torch
from safetensors.torch import load_file

import pgcompress
from cli_run import STAMPED, run_main
from conftest import REPO, reference_like_state_dict
from pgcompress.cli import demo_cmd, eval_cmd
from pgcompress.cli.main import cli, main
from pgcompress.errors import DataError, PgcError
from pgcompress.eval.loop import local_batch_seqs
from pgcompress.eval.shards import read_shard, write_shard
from pgcompress.model.gpt import GPT, GPTConfig
from pgcompress.registry import get_method, method_families

DATA = REPO.parent / "shared" / "data"
TOKENIZER = DATA / "tokenizers" / "fineweb_1024_bpe.model"
COMMANDS = sorted(cli.commands)
WITH_PROGRESS = {"pack", "sweep", "eval", "compare", "demo", "unpack"}
KEYS_DOCUMENTED = COMMANDS


def one_line_error(capsys, *args) -> str:
    code, out, err = run_main(capsys, *args)
    assert code == 2, (args, out, err)
    assert out == "" and len(err.strip().splitlines()) == 1 and err.startswith("pgc: error:"), err
    return err


def run_json(capsys, *args):
    """Run a --json command: exit 0, and stdout is exactly one JSON value on one line."""
    code, out, err = run_main(capsys, *args, "--json")
    assert code == 0, err
    assert out.endswith("\n") and out.count("\n") == 1, out
    return json.loads(out)


def help_text(capsys, command: str) -> str:
    code, out, err = run_main(capsys, command, "-h")
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("consistency")
    sd = reference_like_state_dict(seed=5, dim=32, layers=2, vocab=64)
    torch.save(sd, root / "good.pt")
    (root / "a.pgc").write_bytes(pgcompress.pack(sd, method="int8-ref", submittable=True))
    (root / "script.py").write_text("import os\n\n\ndef f(x):\n    return os.path.join(x, 'y')  # note\n" * 20)
    (root / "data").mkdir()
    write_shard(root / "data" / "fineweb_val_000000.bin", read_shard(DATA / "sp1024" / "fineweb_val_000000.bin")[:1025])
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=1024, num_layers=1, model_dim=32, num_heads=2, num_kv_heads=1, mlp_hidden=64))
    torch.save(model.state_dict(), root / "tiny.pt")
    return root


def eval_args(root: Path) -> list:
    return ["--data-path", root / "data", "--tokenizer", TOKENIZER, "--seq-len", "128", "--device", "cpu"]


# --help ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_an_example_line(capsys, command):
    text = help_text(capsys, command)
    assert re.search(rf"^\s*Example: pgc {command}\b", text, re.M), text


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_json_and_quiet_where_it_shows_progress(command):
    flags = {o for p in cli.commands[command].params for o in getattr(p, "opts", [])}
    assert "--json" in flags
    if command in WITH_PROGRESS:
        assert "--quiet" in flags


@pytest.mark.parametrize("command", KEYS_DOCUMENTED)
def test_help_documents_the_json_keys(capsys, command):
    assert re.search(r"^\s*JSON: ", help_text(capsys, command), re.M)


def documented(capsys, *commands: str) -> str:
    return "".join(help_text(capsys, c) for c in commands)


def assert_keys_documented(obj, text: str, depth: int = 2) -> None:
    """Every key of ``obj`` (and of the objects directly inside it) is named, quoted, in ``text``."""
    items = obj if isinstance(obj, list) else [obj]
    for item in items:
        if isinstance(item, dict):
            for key, value in item.items():
                assert f'"{key}"' in text, key
                if depth > 1 and key != "params":  # params: a method's plain data, not output keys
                    assert_keys_documented(value, text, depth - 1)


# numbers -----------------------------------------------------------------------------------------

def numeric_options():
    for command in COMMANDS:
        for p in cli.commands[command].params:
            numeric = (click.types.IntParamType, click.types.FloatParamType)
            if isinstance(p, click.Option) and isinstance(p.type, numeric):
                yield command, p


def base_args(command: str, root: Path) -> list:
    """The least a command needs besides the option under test (which goes first, so it is read first)."""
    return {"pack": [root / "good.pt"], "sweep": [root / "good.pt", "--budgets", "1e6"], "eval": [root / "good.pt"],
            "compare": [root / "good.pt"], "demo": []}[command]


def out_of_range(t) -> list[str]:
    bad = []
    if t.min is not None:
        bad += [str(t.min)] if t.min_open else [str(t.min - 1), str(t.min - 1000)]
    if t.max is not None:
        bad += [str(t.max)] if t.max_open else [str(t.max + 1)]
    return bad


def test_every_numeric_option_has_a_range():
    found = list(numeric_options())
    assert {c for c, _ in found} >= {"pack", "sweep", "eval", "compare", "demo"}
    for command, p in found:
        assert isinstance(p.type, (click.IntRange, click.FloatRange)), (command, p.name)
        assert p.type.min is not None, (command, p.name)


@pytest.mark.parametrize("command,option", [(c, p.opts[-1]) for c, p in numeric_options()])
def test_out_of_range_numbers_are_one_line_naming_option_and_range(files, capsys, command, option):
    (p,) = [p for p in cli.commands[command].params if option in getattr(p, "opts", [])]
    values = out_of_range(p.type)
    assert values
    bound = f"x>{p.type.min}" if p.type.min_open else f"x>={p.type.min}"
    for value in values:
        err = one_line_error(capsys, command, option, value, *base_args(command, files))
        assert f"'{option}'" in err and value in err and bound in err, err
    for value in ("abc", "1.5x"):
        assert f"'{option}'" in one_line_error(capsys, command, option, value, *base_args(command, files))


CROSS = [  # (args, option named, allowed range in the message), each with --seq-len 256
    (["--stride", "257"], "--stride", "must be in 1..256"),
    (["--max-tokens", "255"], "--max-tokens", "must be at least 256"),
    (["--batch-tokens", "2047"], "--batch-tokens", "must be at least 2048"),  # 8 micro-steps x 256
    (["--batch-tokens", "2047", "--nproc", "2"], "--batch-tokens", "must be at least 2048"),  # 2 ranks x 4
    (["--batch-tokens", "767", "--nproc", "3"], "--batch-tokens", "must be at least 768"),  # 3 ranks x 1
]


@pytest.mark.parametrize("command", ["eval", "compare", "sweep"])
@pytest.mark.parametrize("args,option,allowed", CROSS)
def test_eval_ranges_that_depend_on_seq_len(files, capsys, tmp_path, command, args, option, allowed):
    # a missing checkpoint and data dir: the numbers are refused before anything is read
    target = tmp_path / "none.pt" if command != "sweep" else files / "good.pt"
    extra = ["--budgets", "1e6"] if command == "sweep" else []
    err = one_line_error(capsys, command, target, *extra, "--data-path", tmp_path / "nowhere", "--seq-len", "256",
                         *args)
    assert f"'{option}'" in err and allowed in err and args[1] in err, err


@pytest.mark.parametrize("seq_len", [1, 7, 256, 1024])
@pytest.mark.parametrize("world", range(1, 10))
def test_least_batch_tokens_is_the_loops_own_limit(seq_len, world):
    least = eval_cmd.min_batch_tokens(seq_len, world)
    assert local_batch_seqs(least, seq_len, world) == 1
    with pytest.raises(DataError):
        local_batch_seqs(least - 1, seq_len, world)


def test_eval_accepts_the_limits_themselves(files, capsys):
    # seq_len 128 on one process: batch >= 8 x 128, max_tokens >= 128, stride <= 128
    out = run_json(capsys, "eval", files / "tiny.pt", *eval_args(files), "--batch-tokens", "1024", "--max-tokens",
                   "128", "--stride", "128")
    assert out["token_count"] == 128 and out["stride"] == 128 and out["seq_len"] == 128


@pytest.mark.parametrize("args,option,allowed", [
    (["--dim", "100"], "--dim", "not a multiple of 64"),
    (["--seq-len", "128", "--max-tokens", "127"], "--max-tokens", "must be at least 128"),
])
def test_demo_ranges_checked_before_any_work(capsys, tmp_path, args, option, allowed):
    err = one_line_error(capsys, "demo", "--cache-dir", tmp_path / "cache", *args)
    assert f"'{option}'" in err and allowed in err
    assert not (tmp_path / "cache").exists()


# --json ------------------------------------------------------------------------------------------

def test_unpack_json_lists_what_the_files_hold(files, capsys, tmp_path):
    want = pgcompress.unpack((files / "a.pgc").read_bytes())
    for suffix, kind in ((".safetensors", "safetensors"), (".pt", "pt")):
        out = tmp_path / f"m{suffix}"
        info = run_json(capsys, "unpack", files / "a.pgc", "-o", out)
        got = load_file(out) if kind == "safetensors" else torch.load(out, weights_only=True)
        assert info["output"] == str(out) and info["format"] == kind and info["bytes"] == out.stat().st_size
        assert [t["name"] for t in info["tensors"]] == list(want) and set(got) == set(want)
        for t in info["tensors"]:
            v = got[t["name"]]
            assert t["shape"] == list(v.shape) and t["numel"] == v.numel() and f"torch.{t['dtype']}" == str(v.dtype)
        assert info["values"] == sum(v.numel() for v in got.values())
        assert_keys_documented(info, help_text(capsys, "unpack"))
        out.unlink()
        code, text, err = run_main(capsys, "unpack", files / "a.pgc", "-o", out)
        assert code == 0, err
        assert f"({len(got)} tensors, {info['values']:,} values, {info['bytes']:,} bytes)" in text


def key_values(line: str) -> dict[str, str]:
    return dict(item.split(":", 1) for item in line.split())


def test_wrap_json_byte_counts_are_the_files_sizes(files, capsys, tmp_path):
    script = files / "script.py"
    info = run_json(capsys, "wrap", script, "-o", tmp_path / "w.py")
    assert info["wrapped"] == str(tmp_path / "w.py")
    assert info["counted_bytes"] == (tmp_path / "w.py").stat().st_size
    assert info["raw_bytes"] == script.stat().st_size  # LF-only ASCII: text bytes == file bytes
    assert info["minified_bytes"] < info["raw_bytes"] and info["compressor"] in ("lzma", "brotli")
    assert info["ratio"] == pytest.approx(info["raw_bytes"] / info["counted_bytes"])
    assert_keys_documented(info, help_text(capsys, "wrap"))
    code, out, _ = run_main(capsys, "wrap", script, "-o", tmp_path / "w2.py")
    plain = key_values(out.strip())
    assert set(plain) == set(info)
    assert plain["wrapped"] == str(tmp_path / "w2.py") and plain["ratio"] == f"{info['ratio']:.2f}"
    assert all(plain[k] == str(info[k]) for k in ("raw_bytes", "minified_bytes", "counted_bytes", "compressor"))


def test_decoder_json_bytes_are_the_files_size(files, capsys, tmp_path):
    from pgcompress.submission.decoder import build_decoder

    info = run_json(capsys, "decoder", files / "a.pgc", "-o", tmp_path / "d.py")
    data = (tmp_path / "d.py").read_bytes()
    assert info == {"decoder": str(tmp_path / "d.py"), "bytes": len(data)}
    assert data == build_decoder((files / "a.pgc").read_bytes()).encode()
    assert_keys_documented(info, help_text(capsys, "decoder"))
    code, out, _ = run_main(capsys, "decoder", files / "a.pgc", "-o", tmp_path / "d2.py")
    assert key_values(out.strip()) == {"decoder": str(tmp_path / "d2.py"), "bytes": str(len(data))}


def test_methods_json_readable_patterns_with_working_examples(capsys):
    info = run_json(capsys, "methods")
    rows = info["methods"]
    assert [r["regex"] for r in rows] == [f.regex.pattern for f in method_families()]
    code, out, _ = run_main(capsys, "methods")
    lines = out.splitlines()
    assert len(lines) == len(rows)
    for row, line in zip(rows, lines):
        assert line.split()[:3] == [row["pattern"], "e.g.", row["example"]] and line.endswith(row["summary"])
        assert re.fullmatch(row["regex"], row["example"])
        get_method(row["example"])  # a name the registry builds, not only one the regex accepts
        assert not re.search(r"[\\()|*?]", row["pattern"]), row["pattern"]  # not a raw regex
    patterns = {r["pattern"] for r in rows}
    for algo in ("gptq", "rtn", "clip", "sdclip", "pct"):
        assert f"int<2-8>-{algo}[<mods>]" in patterns
    assert {"int8-ref", "raw", "fp16", "bf16", "fp32"} <= patterns
    assert_keys_documented(info, help_text(capsys, "methods"))


def test_readable_patterns_accept_the_names_they_describe(capsys):
    rows = run_json(capsys, "methods")["methods"]
    by_pattern = {r["pattern"]: r["regex"] for r in rows}
    for bits in range(2, 9):  # int<2-8>-gptq[<mods>]: every width, with and without modifiers
        for name in (f"int{bits}-gptq", f"int{bits}-gptq-g64", f"int{bits}-gptq+lqer-r8"):
            assert re.fullmatch(by_pattern["int<2-8>-gptq[<mods>]"], name)
    for name in ("int1-gptq", "int9-gptq", "int6gptq"):
        assert not re.fullmatch(by_pattern["int<2-8>-gptq[<mods>]"], name)


def test_inspect_json_matches_the_file_and_the_table(files, capsys):
    info = run_json(capsys, "inspect", files / "a.pgc")
    size = (files / "a.pgc").stat().st_size
    assert info["totals"]["total_bytes"] == size
    assert [t["name"] for t in info["tensors"]] == list(pgcompress.unpack((files / "a.pgc").read_bytes()))
    assert_keys_documented(info, help_text(capsys, "inspect"))
    _, out, _ = run_main(capsys, "inspect", files / "a.pgc")
    totals = key_values(out.splitlines()[-1])
    assert int(totals["total_bytes"]) == size and int(totals["tensors"]) == len(info["tensors"])


def test_eval_and_compare_json_match_the_plain_output(files, capsys):
    args = ("eval", files / "tiny.pt", *eval_args(files))
    info = run_json(capsys, *args)
    assert_keys_documented(info, help_text(capsys, "eval"))
    code, out, _ = run_main(capsys, *args, "--quiet")
    assert code == 0
    assert f"{info['name']}_exact val_loss:{info['val_loss']:.8f} val_bpb:{info['val_bpb']:.8f}" in out
    assert info["token_count"] == 1024 and info["artifact_bytes"] == (files / "tiny.pt").stat().st_size

    rows = run_json(capsys, "compare", files / "tiny.pt", files / "tiny.pt", *eval_args(files))
    assert [r["val_bpb"] for r in rows] == [info["val_bpb"]] * 2 and [r["gap_bpb"] for r in rows] == [0.0, 0.0]
    assert_keys_documented(rows, documented(capsys, "compare", "eval"))


def test_pack_json_matches_the_artifact(files, capsys, tmp_path):
    out = tmp_path / "p.pgc"
    info = run_json(capsys, "pack", files / "good.pt", "-o", out, "--method", "int8-ref", "--submission", "import")
    assert info["artifact"] == str(out) and info["model_bytes"] == out.stat().st_size
    assert info["total_bytes"] == info["code_bytes"] + info["model_bytes"] and info["method"] == "int8-ref"
    assert_keys_documented(info, help_text(capsys, "pack"))


def test_sweep_json_matches_its_files(files, capsys, tmp_path):
    out_dir = tmp_path / "sweep"
    info = run_json(capsys, "sweep", files / "tiny.pt", "--budgets", "70000", "--uniform", "int8-ref", "--out-dir",
                    out_dir, "--calib-selfgen", "2", "--calib-seq-len", "16", *eval_args(files), "--max-tokens", "256")
    assert info == json.loads((out_dir / "sweep.json").read_text())
    assert [(r["kind"], r["label"]) for r in info["rows"]] == [("solver", "70000"), ("uniform", "int8-ref")]
    for r in info["rows"]:
        assert Path(r["artifact"]).stat().st_size == r["model_bytes"]
    assert info["rows"][0]["total_bytes"] < 70000
    assert_keys_documented(info, help_text(capsys, "sweep"))


@pytest.mark.parametrize("args", [
    ["unpack", "{root}/good.pt", "-o", "{tmp}/m.pt"], ["decoder", "{root}/good.pt", "-o", "{tmp}/d.py"],
    ["inspect", "{root}/good.pt"], ["wrap", "{root}/a.pgc", "-o", "{tmp}/w.py"],
    ["eval", "{root}/tiny.pt", "--stride", "0"], ["pack", "{root}/good.pt", "-o", "{tmp}/a.pgc", "--method", "int9"],
    ["demo", "--layers", "0"], ["methods", "--bogus"],
])
def test_errors_with_json_are_one_line_on_stderr(files, capsys, tmp_path, args):
    one_line_error(capsys, *[a.format(root=files, tmp=tmp_path) for a in args], "--json")
    assert list(tmp_path.iterdir()) == []


# progress and --quiet ----------------------------------------------------------------------------

class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def tiny_gpt(vocab: int = 64) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab, num_layers=1, model_dim=32, num_heads=2, num_kv_heads=1, mlp_hidden=64))


def test_selfgen_progress_ticks_every_token_with_a_total(monkeypatch):
    from pgcompress.quant import selfgen

    seen = {"updates": []}

    @contextlib.contextmanager
    def recorder(label, total, unit="it", enabled=True, work=None):
        seen.update(label=label, total=total, enabled=enabled, work=work)
        yield types.SimpleNamespace(update=seen["updates"].append)

    monkeypatch.setattr(selfgen, "progress_counter", recorder)
    tokens = selfgen.selfgen_tokens(tiny_gpt(), 5, 9, batch_seqs=2, progress=True)
    assert tokens.shape == (5, 9)
    assert seen["label"] == "self-generate" and seen["enabled"] and seen["total"] == 5 * 8
    assert seen["work"] is None  # KV-cached steps cost alike: a plain rate
    assert seen["updates"] == [2] * 8 + [2] * 8 + [1] * 8  # every position of every batch (2, 2, 1 sequences)


def test_selfgen_progress_bar_is_drawn_at_a_terminal(monkeypatch):
    from pgcompress.quant.calibration import selfgen_tokens

    err = _Tty()
    monkeypatch.setattr(sys, "stderr", err)
    selfgen_tokens(tiny_gpt(), 3, 6, batch_seqs=2, progress=True)
    assert "self-generate" in err.getvalue() and "/15" in err.getvalue()  # 3 sequences x 5 sampled tokens


def test_progress_counter_is_a_bar_at_a_terminal_and_stamped_lines_off_it(monkeypatch):
    from pgcompress.progress import progress_counter

    for stream, enabled, shown in ((_Tty(), True, True), (_Tty(), False, False), (io.StringIO(), True, True),
                                   (io.StringIO(), False, False)):
        monkeypatch.setattr(sys, "stderr", stream)
        with progress_counter("work", 10, enabled=enabled) as bar:
            bar.update(10)
        assert ("work" in stream.getvalue()) == shown
        lines = stream.getvalue().splitlines()
        assert (bool(lines) and all(STAMPED.match(line) for line in lines)) == (shown and not stream.isatty()), lines


@pytest.mark.parametrize("flags,progress", [([], True), (["--quiet"], False), (["--json"], False)])
def test_eval_progress_follows_quiet_and_json(files, capsys, monkeypatch, flags, progress):
    seen = []

    def fake_run(paths, opts):
        seen.append(opts.progress)
        raise PgcError("stop here")

    monkeypatch.setattr(eval_cmd, "run", fake_run)
    monkeypatch.setattr(eval_cmd.sys, "stderr", _Tty())
    try:
        main(["eval", str(files / "tiny.pt"), *flags])
    except SystemExit as exc:
        assert exc.code == 2
    assert seen == [progress]


@pytest.mark.parametrize("flags,shown", [([], True), (["--quiet"], False), (["--json"], False)])
def test_demo_messages_follow_quiet_and_json(capsys, monkeypatch, tmp_path, flags, shown):
    seen = []

    def fake_run_demo(cfg, log, progress):
        seen.append(progress)
        log("training a tiny model ...")
        raise PgcError("stop here")

    monkeypatch.setattr(demo_cmd, "run_demo", fake_run_demo)
    code, out, err = run_main(capsys, "demo", "--cache-dir", tmp_path, *flags)
    assert code == 2 and out == "" and seen == [shown]
    assert ("training a tiny model" in err) == shown and "stop here" in err


def test_unpack_progress_ticks_once_per_tensor_with_the_same_result(files, monkeypatch):
    import pgcompress.progress as prog
    from pgcompress.unpack import unpack

    data = (files / "a.pgc").read_bytes()
    seen = {"updates": []}

    @contextlib.contextmanager
    def recorder(label, total, unit="it", enabled=True):
        seen.update(label=label, total=total)
        yield types.SimpleNamespace(update=seen["updates"].append)

    monkeypatch.setattr(prog, "progress_counter", recorder)
    with_bar = unpack(data, progress=True)
    plain = unpack(data)
    n = len(pgcompress.read_header(data)["tensors"])
    assert seen["label"] == "unpack" and seen["total"] == n and seen["updates"] == [1] * n
    assert list(with_bar) == list(plain) and all(torch.equal(with_bar[k], plain[k]) for k in plain)


@pytest.mark.parametrize("flags,shown", [([], True), (["--quiet"], False), (["--json"], False)])
def test_unpack_bar_follows_quiet_and_json(files, capsys, monkeypatch, tmp_path, flags, shown):
    err = _Tty()
    monkeypatch.setattr(sys, "stderr", err)
    try:
        main(["unpack", str(files / "a.pgc"), "-o", str(tmp_path / "m.safetensors"), *flags])
    except SystemExit as exc:
        assert exc.code == 0
    assert ("unpack" in err.getvalue()) == shown
