"""``pgc demo``: train a small model on stdlib docstrings, pack it with the budget solver and a
uniform method, and compare both with the reference export on the same tokens."""

from __future__ import annotations

from pathlib import Path

import click

from pgcompress.cli.options import bad_value, echo_json, json_option, quiet_option
from pgcompress.demo.report import report_json, report_lines
from pgcompress.demo.run import DemoConfig, run_demo
from pgcompress.demo.train import TrainConfig
from pgcompress.progress import note
from pgcompress.quant.policy import MethodSpec


@click.command()
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where data and the trained model are cached [default: ~/.cache/pgcompress/demo].")
@click.option("--train-steps", type=click.IntRange(min=1), default=TrainConfig.train_steps, show_default=True,
              help="Training steps (the model is the same on every machine; about a minute on 2 CPU cores).")
@click.option("--layers", type=click.IntRange(min=1), default=TrainConfig.num_layers, show_default=True,
              help="Transformer blocks.")
@click.option("--dim", type=click.IntRange(min=64), default=TrainConfig.model_dim, show_default=True,
              help="Model width, a multiple of 64 (heads of 64 dims).")
@click.option("--seq-len", type=click.IntRange(min=2), default=TrainConfig.seq_len, show_default=True,
              help="Training, calibration and eval sequence length.")
@click.option("--method", default=DemoConfig.method, show_default=True,
              help="The uniform method spec shown beside the solver's artifact (GPTQ calibrates on text the "
                   "model generates).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=DemoConfig.max_tokens, show_default=True,
              help="Validation tokens scored (at least one sequence).")
@json_option
@quiet_option
def demo(cache_dir, train_steps, layers, dim, seq_len, method, max_tokens, as_json, quiet):
    """The whole pipeline with no downloads: corpus, tokenizer, training, packing, eval (cached).

    Trains a fixed number of steps on one CPU thread, so the model, the artifacts' bytes and val_bpb
    are the same on every machine and load; then packs with the budget solver (what 'pgc pack' does
    without --method) at the challenge's budget scaled to this model, and with one uniform method.

    \b
    JSON: {"results": [{the keys of 'pgc eval --json', "row" (the table's row name), "sha256" (of the
           file scored), "gap_bpb" (against the checkpoint), "fits" (under the budget; null for the
           checkpoint)}] for the checkpoint, the reference int8+zlib export, the uniform method and the
           solver's artifact; "budget", "model_params", "model_sha256" (of the trained weights),
           "train" (steps, seconds, tokens, final_loss), "solver" {"headroom", "predicted_damage",
           "calibration", "methods" (tensors per method)}, "cached" ({"data", "model"}),
           "seconds" (per stage)}.

    Example: pgc demo --train-steps 200 --max-tokens 65536
    """
    if dim % 64:
        raise bad_value("--dim", f"{dim} is not a multiple of 64 (heads of 64 dims); e.g. {dim // 64 * 64 or 64}")
    if max_tokens < seq_len:
        raise bad_value("--max-tokens", f"{max_tokens} is less than one sequence of --seq-len {seq_len}; "
                                        f"must be at least {seq_len}")
    MethodSpec.parse(method)  # a typo fails now, not after training
    heads = max(1, dim // 64)  # head_dim 64 as in the reference; GQA with half the KV heads when even
    kv_heads = heads // 2 if heads % 2 == 0 else heads
    train = TrainConfig(num_layers=layers, model_dim=dim, num_heads=heads, num_kv_heads=kv_heads,
                        seq_len=seq_len, train_steps=train_steps)
    cfg = DemoConfig(train=train, method=method, max_tokens=max_tokens)
    if cache_dir is not None:
        cfg.cache_dir = cache_dir
    silent = as_json or quiet
    report = run_demo(cfg, log=(lambda msg: None) if silent else note, progress=not silent)
    if as_json:
        echo_json(report_json(report))
        return
    for line in report_lines(report):
        click.echo(line)
