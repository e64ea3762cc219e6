"""``pgc demo`` end to end with tiny settings: the side-by-side table (reference export, a uniform
method, the budget solver), its cache, its fixed step count and thread count, and its one-line
errors for a cache it cannot use. The default (real) configuration runs in .ci/run."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import zlib
from collections import namedtuple
from pathlib import Path

import pytest
import torch

import pgcompress.demo.run as demo_run
from cli_run import STAMPED, error_line, run_main
from pgcompress.cli.main import main
from pgcompress.torch_threads import torch_threads
from pgcompress.demo.baseline import reference_int8_zlib
from pgcompress.demo.corpus import split_document
from pgcompress.demo.train import TrainConfig
from pgcompress.eval.shards import read_shard
from pgcompress.progress import note

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CKPT = DATA / "checkpoints" / "ref_sp1024_9x512.pt"
TINY = ["--train-steps", "3", "--layers", "2", "--dim", "64", "--seq-len", "128", "--max-tokens", "4096"]
TINY_TRAIN = TrainConfig(num_layers=2, model_dim=64, num_heads=1, num_kv_heads=1, seq_len=128, train_steps=3)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def demo_json(capsys, cache: Path, *extra) -> dict:
    code, out, err = run_main(capsys, "demo", "--cache-dir", cache, *TINY, *extra, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    """One cold tiny run (JSON) in a fresh cache: (its cache, its JSON)."""
    cache = tmp_path_factory.mktemp("demo") / "cache"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(["demo", "--cache-dir", str(cache), *TINY, "--method", "int8-ref", "--json"])
        except SystemExit as exc:
            assert not exc.code
    return cache, json.loads(out.getvalue())


def test_rows_are_the_reference_the_uniform_method_and_the_solver(cold):
    cache, first = cold
    raw, ref, uniform, solver = first["results"]
    assert [r["row"] for r in first["results"]] == ["checkpoint (fp32/bf16)", "reference int8+zlib",
                                                    "pgcompress int8-ref", "pgcompress solver"]
    assert [r["label"] for r in first["results"][:3]] == ["raw", "int8_zlib", "int8_ref"]
    assert first["cached"] == {"data": False, "model": False} and first["train"]["steps"] == 3
    # The budget is the challenge's, scaled by the reference export: 16,000,000 / 15,815,847.
    assert first["budget"] == int(16_000_000 * ref["artifact_bytes"] / 15_815_847)
    # The solver's artifact is under it; each row says whether it fits, from its own bytes.
    assert solver["artifact_bytes"] < first["budget"] and solver["fits"] is True and raw["fits"] is None
    for r in first["results"][1:]:
        assert r["fits"] == (r["artifact_bytes"] < first["budget"])
        assert r["gap_bpb"] == pytest.approx(r["val_bpb"] - raw["val_bpb"])
    # pgcompress int8-ref and the reference export dequantize to the same weights -> same bpb.
    assert uniform["val_bpb"] == ref["val_bpb"]
    assert all(r["token_count"] == 4096 for r in first["results"])
    # Each row's sha256 is the file it scored; the model hash is of the cached weights.
    for r in first["results"]:
        assert r["sha256"] == sha256(Path(r["path"])) and Path(r["path"]).stat().st_size == r["artifact_bytes"]
    (model,) = cache.glob("model-*.pt")
    sd = torch.load(model, weights_only=True)
    h = hashlib.sha256()
    for name in sorted(sd):
        t = sd[name].contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode() + t.view(torch.uint8).numpy().tobytes())
    assert first["model_sha256"] == h.hexdigest()
    assert first["model_params"] == sum(t.numel() for t in sd.values())
    assert sum(first["solver"]["methods"].values()) == len(sd)


def test_the_shards_and_the_reference_export_are_the_challenges_formats(cold):
    cache, first = cold
    (data_dir,) = cache.glob("data-*")
    val = read_shard(data_dir / "fineweb_val_000000.bin")
    assert val[0] == 1 and (val == 1).sum() > 10 and val.max() < 1024  # BOS-prefixed, 1024-piece ids
    (ptz,) = cache.glob("exports-*/final_model.int8.ptz")
    assert ptz.stat().st_size == first["results"][1]["artifact_bytes"]
    obj = torch.load(io.BytesIO(zlib.decompress(ptz.read_bytes())), weights_only=True)
    assert obj["__quant_format__"] == "int8_clean_per_row_v1"


def test_a_cached_rerun_gives_the_same_model_bytes_and_scores(cold, capsys):
    cache, first = cold
    second = demo_json(capsys, cache, "--method", "int8-ref")
    assert second["cached"] == {"data": True, "model": True}
    assert second["model_sha256"] == first["model_sha256"]
    for a, b in zip(first["results"], second["results"]):
        assert (a["sha256"], a["val_bpb"], a["artifact_bytes"]) == (b["sha256"], b["val_bpb"], b["artifact_bytes"])


def test_the_table_shows_a_uniform_method_over_the_budget_without_failing(cold, capsys, monkeypatch):
    """At half the scaled budget (a tiny model's weights compress far below its reference export):
    the solver still fits, the uniform method does not, and the table says so."""
    cache, first = cold
    budget = first["results"][1]["artifact_bytes"] // 2
    monkeypatch.setattr(demo_run, "scaled_budget", lambda reference_bytes: reference_bytes // 2)
    code, out, err = run_main(capsys, "demo", "--cache-dir", cache, *TINY, "--method", "raw")
    assert code == 0, err
    lines = out.splitlines()
    assert re.fullmatch(r" +bytes +val_bpb +gap +budget", lines[0])
    rows = {line.split("  ")[0]: line for line in lines[1:5]}
    assert list(rows) == ["checkpoint (fp32/bf16)", "reference int8+zlib", "pgcompress raw", "pgcompress solver"]
    nbytes = {name: int(row[len(name):].split()[0].replace(",", "")) for name, row in rows.items()}
    for name in list(rows)[1:]:  # must be strictly below: over by bytes - (budget - 1)
        left = budget - 1 - nbytes[name]
        assert rows[name].endswith(f"fits ({left:,} B left)" if left >= 0 else f"over by {-left:,} B"), rows[name]
    assert nbytes["pgcompress raw"] >= budget > nbytes["pgcompress solver"] and nbytes["reference int8+zlib"] >= budget
    # the checkpoint's and the reference's bytes and scores are the JSON run's: same cache, same model
    for name, r in zip(list(rows)[:2], first["results"]):
        assert nbytes[name] == r["artifact_bytes"] and f"{r['val_bpb']:.5f}" in rows[name]
    # numbers are right-aligned: every row's cells end where the header's do
    ends = [m.end() for m in re.finditer(r"\S+", lines[0])]  # bytes, val_bpb, gap, budget
    for i, line in enumerate(lines[1:5]):
        for end in ends[:3] if i else ends[:2]:
            assert line[end - 1] != " " and line[end:end + 1] in (" ", ""), (line, end)
    # progress went to stderr as stamped lines (pytest's stderr is not a terminal), the table to stdout
    assert not any(STAMPED.match(line) for line in out.splitlines())
    assert err and all(STAMPED.match(line) for line in err.splitlines()), err


def test_training_is_one_thread_and_the_thread_count_is_restored(tmp_path, monkeypatch):
    seen = []
    real = demo_run.train_model

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(demo_run, "train_model", spy)
    before = torch.get_num_threads()
    cfg = demo_run.DemoConfig(cache_dir=tmp_path, train=TINY_TRAIN)
    demo_run.open_cache(cfg.cache_dir)
    with torch_threads(demo_run.DEMO_THREADS):
        data_dir, _ = demo_run.prepare_data(cfg, note)
        demo_run.prepare_model(cfg, data_dir, note, progress=False)
    assert seen == [1] and torch.get_num_threads() == before


def test_the_step_count_decides_the_model_and_is_in_its_cache_key(tmp_path):
    cfg = demo_run.DemoConfig(cache_dir=tmp_path, train=TINY_TRAIN)
    demo_run.open_cache(tmp_path)
    data_dir, _ = demo_run.prepare_data(cfg, note)
    with torch_threads(1):
        a, _, cached_a = demo_run.prepare_model(cfg, data_dir, note, progress=False)
        a_again, _, cached_again = demo_run.prepare_model(cfg, data_dir, note, progress=False)
        longer = demo_run.DemoConfig(cache_dir=tmp_path, train=TrainConfig(**{**vars(TINY_TRAIN), "train_steps": 4}))
        b, stats_b, cached_b = demo_run.prepare_model(longer, data_dir, note, progress=False)
    assert (cached_a, cached_again, cached_b) == (False, True, False)
    assert a == a_again and a != b and stats_b.steps == 4
    sd_a, sd_b = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert any(not torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    # retrained from scratch in another cache: the same weights, bit for bit
    other = demo_run.DemoConfig(cache_dir=tmp_path / "other", train=TINY_TRAIN)
    demo_run.open_cache(other.cache_dir)
    with torch_threads(1):
        again, _, cached = demo_run.prepare_model(other, data_dir, note, progress=False)
    sd_again = torch.load(again, weights_only=True)
    assert not cached and all(torch.equal(sd_a[k], sd_again[k]) for k in sd_a)


def test_an_unusable_cache_dir_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, out, err = run_main(capsys, "demo", "--cache-dir", blocker / "demo", *TINY)
    assert code == 2 and out == "" and "--cache-dir" in error_line(err) and str(blocker) in err

    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(demo_run.shutil, "disk_usage", lambda path: Usage(10 << 30, 10 << 30, 5 << 20))
    code, out, err = run_main(capsys, "demo", "--cache-dir", tmp_path / "full", *TINY)
    line = error_line(err)
    assert code == 2 and out == "" and "5 MiB free" in line and "--cache-dir" in line
    assert not list((tmp_path / "full").iterdir())  # nothing written before the check


def test_a_bad_method_fails_before_any_work(tmp_path, capsys):
    code, out, err = run_main(capsys, "demo", "--cache-dir", tmp_path / "c", *TINY, "--method", "int9-gptq")
    assert code == 2 and "int9" in error_line(err) and not (tmp_path / "c").exists()


def test_split_document():
    text = "\n\n".join(["a" * 30, "b" * 30, "c" * 100])
    parts = split_document(text, limit=64)
    assert all(len(p) <= 64 for p in parts) and "".join(parts).replace("\n", "") == text.replace("\n", "")


@pytest.mark.skipif(not CKPT.exists(), reason="shared checkpoint not present")
def test_reference_export_size_matches_reference():
    # data/README.md: the challenge's script writes 13,905,647 bytes of int8+zlib for this checkpoint.
    sd = torch.load(CKPT, weights_only=True, map_location="cpu")
    assert len(reference_int8_zlib(sd)) == 13_905_647
