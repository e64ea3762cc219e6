"""``pgc demo``: train a small model on stdlib docstrings, pack it, and compare with the reference export."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from pgcompress.demo.run import DemoConfig, report_lines, run_demo
from pgcompress.demo.train import TrainConfig


@click.command()
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where data and the trained model are cached [default: ~/.cache/pgcompress/demo].")
@click.option("--train-seconds", type=float, default=60.0, show_default=True, help="CPU training time.")
@click.option("--train-steps", type=int, default=None, help="Train exactly N steps instead (reproducible).")
@click.option("--layers", type=int, default=4, show_default=True)
@click.option("--dim", type=int, default=192, show_default=True, help="Model width (heads of 64 dims).")
@click.option("--seq-len", type=int, default=256, show_default=True)
@click.option("--method", default=DemoConfig.method, show_default=True,
              help="pgcompress method spec for the artifact (GPTQ calibrates on text the model generates).")
@click.option("--max-tokens", type=int, default=None, help="Score only the first N validation tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
def demo(cache_dir, train_seconds, train_steps, layers, dim, seq_len, method, max_tokens, as_json):
    """The whole pipeline with no downloads: corpus, tokenizer, training, packing, eval (cached)."""
    heads = max(1, dim // 64)  # head_dim 64 as in the reference; GQA with half the KV heads when even
    kv_heads = heads // 2 if heads % 2 == 0 else heads
    train = TrainConfig(num_layers=layers, model_dim=dim, num_heads=heads, num_kv_heads=kv_heads,
                        seq_len=seq_len, train_seconds=train_seconds, train_steps=train_steps)
    cfg = DemoConfig(train=train, method=method, max_tokens=max_tokens)
    if cache_dir is not None:
        cfg.cache_dir = cache_dir
    report = run_demo(cfg, log=lambda msg: click.echo(msg, err=True))
    if as_json:
        rows = [{"name": n, **r.to_json(), "gap_bpb": r.val_bpb - report.results[0].val_bpb}
                for n, r in zip(report.names, report.results)]
        click.echo(json.dumps({"results": rows, "budget": report.budget, "model_params": report.model_params,
                               "train": asdict(report.train), "cached": report.cached,
                               "seconds": report.seconds}, sort_keys=True))
        return
    for line in report_lines(report):
        click.echo(line)
