"""``pgc eval`` and ``pgc compare``: score artifacts/checkpoints the way the challenge does."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from pgcompress.eval.model import parse_overrides
from pgcompress.eval.runner import EvalOptions, default_data_path, default_tokenizer_path, run

_FILE = click.Path(dir_okay=False, path_type=Path)


def _eval_options(fn):
    """Options shared by eval and compare; they map one to one onto EvalOptions."""
    options = [
        click.option("--data-path", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Directory with fineweb_val_*.bin [env DATA_PATH, else ./data/datasets/fineweb10B_sp1024]."),
        click.option("--tokenizer", type=_FILE, default=None,
                     help="SentencePiece .model [env TOKENIZER_PATH, else ./data/tokenizers/fineweb_1024_bpe.model]."),
        click.option("--seq-len", type=int, default=1024, show_default=True, help="Eval window length."),
        click.option("--batch-tokens", type=int, default=524_288, show_default=True,
                     help="VAL_BATCH_SIZE: tokens per step over all ranks (split as the reference does)."),
        click.option("--max-tokens", type=int, default=None, help="Score only the first N target tokens."),
        click.option("--stride", type=int, default=None,
                     help="Sliding-window eval with this stride (labelled _sliding_window; not the standard number)."),
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
                     help="Default: cuda if available, else cpu."),
        click.option("--nproc", type=int, default=1, show_default=True,
                     help="Spawn N local processes (gloo on CPU, NCCL on CUDA); torchrun sets its own."),
        click.option("--model-code", type=_FILE, default=None,
                     help="train_gpt.py whose GPT/Hyperparameters define a custom architecture."),
        click.option("--model-config", "model_config", multiple=True, metavar="KEY=VALUE",
                     help="Override an inferred built-in model setting (e.g. rope_base=50000); repeatable."),
        click.option("--json", "as_json", is_flag=True, help="Print results as JSON."),
    ]
    return functools.reduce(lambda f, opt: opt(f), reversed(options), fn)


def _options(data_path, tokenizer, seq_len, batch_tokens, max_tokens, stride, device, nproc,
             model_code, model_config, label=None, as_json=False) -> EvalOptions:
    return EvalOptions(
        data_path=data_path or default_data_path(),
        tokenizer_path=tokenizer or default_tokenizer_path(),
        seq_len=seq_len, batch_tokens=batch_tokens, max_tokens=max_tokens, stride=stride, device=device,
        nproc=nproc, model_code=model_code, model_overrides=parse_overrides(list(model_config)), label=label,
        progress=not as_json and sys.stderr.isatty(),
    )


@click.command("eval")
@click.argument("path", type=_FILE)
@_eval_options
@click.option("--label", default=None,
              help="Log label: final_<LABEL>_roundtrip (default: the artifact's method, or 'raw').")
def eval_(path, label, as_json, **kw):
    """Score PATH (artifact, checkpoint or .safetensors): val_loss and val_bpb after the roundtrip."""
    results = run([path], _options(label=label, as_json=as_json, **kw))
    if results is None:  # not rank 0
        return
    (result,) = results
    if as_json:
        click.echo(json.dumps(result.to_json(), sort_keys=True))
        return
    for line in result.lines():
        click.echo(line)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=_FILE)
@_eval_options
def compare(paths, as_json, **kw):
    """Score each of PATHS on the same tokens; gaps are against the first (e.g. the raw checkpoint)."""
    results = run(list(paths), _options(as_json=as_json, **kw))
    if results is None:
        return
    if as_json:
        base = results[0].val_bpb
        click.echo(json.dumps([{**r.to_json(), "gap_bpb": r.val_bpb - base} for r in results], sort_keys=True))
        return
    for line in compare_table(results):
        click.echo(line)


def compare_table(results) -> list[str]:
    """Plain aligned table: one row per file, bpb gap against the first row."""
    base = results[0].val_bpb
    rows = [("file", "label", "bytes", "val_loss", "val_bpb", "gap")]
    for r in results:
        gap = "" if r is results[0] else f"{r.val_bpb - base:+.6f}"
        rows.append((Path(r.path).name, r.label, f"{r.artifact_bytes:,}", f"{r.val_loss:.6f}", f"{r.val_bpb:.6f}", gap))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
             for row in rows]
    r0 = results[0]
    mode = f"sliding window stride {r0.stride}" if r0.stride else "standard"
    lines.append(f"{r0.token_count:,} target tokens, seq_len {r0.seq_len}, {mode}, {r0.device} x{r0.world_size}")
    return lines
