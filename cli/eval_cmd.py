"""``pgc eval`` and ``pgc compare``: score artifacts/checkpoints the way the challenge does."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click

from pgcompress.cli.options import bad_value, echo_json, json_option, quiet_option
from pgcompress.eval.loop import REFERENCE_MICRO_STEPS
from pgcompress.eval.runner import EvalOptions, default_data_path, default_tokenizer_path, run
from pgcompress.model.gpt import parse_overrides

_FILE = click.Path(dir_okay=False, path_type=Path)


def _eval_options(fn):
    """Options shared by eval and compare; they map one to one onto EvalOptions."""
    options = [
        click.option("--data-path", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Directory with fineweb_val_*.bin [env DATA_PATH, else ./data/datasets/fineweb10B_sp1024]."),
        click.option("--tokenizer", type=_FILE, default=None,
                     help="SentencePiece .model [env TOKENIZER_PATH, else ./data/tokenizers/fineweb_1024_bpe.model]."),
        click.option("--seq-len", type=click.IntRange(min=1), default=1024, show_default=True,
                     help="Eval window length."),
        click.option("--batch-tokens", type=click.IntRange(min=1), default=524_288, show_default=True,
                     help="VAL_BATCH_SIZE: tokens per step over all ranks (split as the reference does: at "
                          "least one sequence per rank and micro-step, 8 x seq-len on one process)."),
        click.option("--max-tokens", type=click.IntRange(min=1), default=None,
                     help="Score only the first N target tokens (at least one sequence)."),
        click.option("--stride", type=click.IntRange(min=1), default=None,
                     help="Sliding-window eval with this stride, 1..seq-len (labelled _sliding_window; not the "
                          "standard number)."),
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
                     help="Default: cuda if available, else cpu."),
        click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Spawn N local processes (gloo on CPU, NCCL on CUDA); torchrun sets its own."),
        click.option("--model-code", type=_FILE, default=None,
                     help="train_gpt.py whose GPT/Hyperparameters define a custom architecture."),
        click.option("--model-config", "model_config", multiple=True, metavar="KEY=VALUE",
                     help="Override an inferred built-in model setting (e.g. rope_base=50000); repeatable."),
        json_option,
        quiet_option,
    ]
    return functools.reduce(lambda f, opt: opt(f), reversed(options), fn)


def _options(data_path, tokenizer, seq_len, batch_tokens, max_tokens, stride, device, nproc,
             model_code, model_config, label=None, as_json=False, quiet=False) -> EvalOptions:
    check_ranges(seq_len, batch_tokens, max_tokens, stride, nproc)
    return EvalOptions(
        data_path=data_path or default_data_path(),
        tokenizer_path=tokenizer or default_tokenizer_path(),
        seq_len=seq_len, batch_tokens=batch_tokens, max_tokens=max_tokens, stride=stride, device=device,
        nproc=nproc, model_code=model_code, model_overrides=parse_overrides(list(model_config)), label=label,
        progress=not (as_json or quiet) and sys.stderr.isatty(),
    )


def min_batch_tokens(seq_len: int, world_size: int) -> int:
    """The least --batch-tokens that gives every rank one sequence per micro-step (the reference's
    split: grad_accum = 8 // world_size, see ``eval.loop.local_batch_seqs``)."""
    grad_accum = REFERENCE_MICRO_STEPS // world_size if REFERENCE_MICRO_STEPS % world_size == 0 else 1
    return seq_len * world_size * grad_accum


def check_ranges(seq_len, batch_tokens, max_tokens, stride, nproc) -> None:
    """The ranges that depend on another option, checked before any file is read."""
    if stride is not None and stride > seq_len:
        raise bad_value("--stride", f"{stride} is larger than --seq-len {seq_len}; must be in 1..{seq_len}")
    if max_tokens is not None and max_tokens < seq_len:
        raise bad_value("--max-tokens", f"{max_tokens} is less than one sequence of --seq-len {seq_len}; "
                                        f"must be at least {seq_len}")
    world = nproc if nproc > 1 else int(os.environ.get("WORLD_SIZE", "1"))
    least = min_batch_tokens(seq_len, world)
    if batch_tokens < least:
        raise bad_value("--batch-tokens", f"{batch_tokens} gives less than one sequence of --seq-len {seq_len} per "
                                          f"rank and micro-step (world size {world}); must be at least {least}")


@click.command("eval")
@click.argument("path", type=_FILE)
@_eval_options
@click.option("--label", default=None,
              help="Log label: final_<LABEL>_roundtrip (default: the artifact's method, or 'raw').")
def eval_(path, label, **kw):
    """Score PATH (artifact, checkpoint or .safetensors): val_loss and val_bpb after the roundtrip.

    \b
    JSON: {"name" (the log prefix, e.g. final_int6_gptq_roundtrip), "path", "kind" ("artifact" or
           "checkpoint"), "label", "val_loss", "val_bpb", "eval_ms", "model_params", "artifact_bytes",
           "token_count", "byte_count", "seq_len", "stride", "device", "world_size"}.

    Example: pgc eval final_model.pgc --max-tokens 65536
    """
    results = run([path], _options(label=label, **kw))
    if results is None:  # not rank 0
        return
    (result,) = results
    if kw["as_json"]:
        echo_json(result.to_json())
        return
    for line in result.lines():
        click.echo(line)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=_FILE)
@_eval_options
def compare(paths, **kw):
    """Score each of PATHS on the same tokens; gaps are against the first (e.g. the raw checkpoint).

    \b
    JSON: a list, one object per path in order, with the keys of 'pgc eval --json' and "gap_bpb"
          (val_bpb minus the first path's).

    Example: pgc compare final_model.pt final_model.pgc --max-tokens 65536
    """
    results = run(list(paths), _options(**kw))
    if results is None:
        return
    if kw["as_json"]:
        base = results[0].val_bpb
        echo_json([{**r.to_json(), "gap_bpb": r.val_bpb - base} for r in results])
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
