"""``pgc demo``: train a small model on stdlib docstrings, pack it, and compare with the reference export."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from pgcompress.cli.options import bad_value, echo_json, json_option, quiet_option
from pgcompress.demo.run import DemoConfig, report_lines, run_demo
from pgcompress.demo.train import TrainConfig


@click.command()
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where data and the trained model are cached [default: ~/.cache/pgcompress/demo].")
@click.option("--train-seconds", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="CPU training time.")
@click.option("--train-steps", type=click.IntRange(min=1), default=None,
              help="Train exactly N steps instead (reproducible).")
@click.option("--layers", type=click.IntRange(min=1), default=4, show_default=True, help="Transformer blocks.")
@click.option("--dim", type=click.IntRange(min=64), default=192, show_default=True,
              help="Model width, a multiple of 64 (heads of 64 dims).")
@click.option("--seq-len", type=click.IntRange(min=2), default=256, show_default=True,
              help="Training, calibration and eval sequence length.")
@click.option("--method", default=DemoConfig.method, show_default=True,
              help="pgcompress method spec for the artifact (GPTQ calibrates on text the model generates).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="Score only the first N validation tokens (at least one sequence).")
@json_option
@quiet_option
def demo(cache_dir, train_seconds, train_steps, layers, dim, seq_len, method, max_tokens, as_json, quiet):
    """The whole pipeline with no downloads: corpus, tokenizer, training, packing, eval (cached).

    \b
    JSON: {"results": [{the keys of 'pgc eval --json', "row" (the table's row name), "gap_bpb"
           (against the checkpoint)}] for the checkpoint, the reference int8+zlib export and the artifact;
           "budget", "model_params", "train" (steps, seconds, tokens, final_loss),
           "cached" ({"data", "model"}), "seconds" (per stage)}.

    Example: pgc demo --train-steps 200 --max-tokens 65536
    """
    if dim % 64:
        raise bad_value("--dim", f"{dim} is not a multiple of 64 (heads of 64 dims); e.g. {dim // 64 * 64 or 64}")
    if max_tokens is not None and max_tokens < seq_len:
        raise bad_value("--max-tokens", f"{max_tokens} is less than one sequence of --seq-len {seq_len}; "
                                        f"must be at least {seq_len}")
    heads = max(1, dim // 64)  # head_dim 64 as in the reference; GQA with half the KV heads when even
    kv_heads = heads // 2 if heads % 2 == 0 else heads
    train = TrainConfig(num_layers=layers, model_dim=dim, num_heads=heads, num_kv_heads=kv_heads,
                        seq_len=seq_len, train_seconds=train_seconds, train_steps=train_steps)
    cfg = DemoConfig(train=train, method=method, max_tokens=max_tokens)
    if cache_dir is not None:
        cfg.cache_dir = cache_dir
    silent = as_json or quiet
    report = run_demo(cfg, log=lambda msg: None if silent else click.echo(msg, err=True))
    if as_json:
        rows = [{**r.to_json(), "row": n, "gap_bpb": r.val_bpb - report.results[0].val_bpb}
                for n, r in zip(report.names, report.results)]
        echo_json({"results": rows, "budget": report.budget, "model_params": report.model_params,
                   "train": asdict(report.train), "cached": report.cached, "seconds": report.seconds})
        return
    for line in report_lines(report):
        click.echo(line)
