"""``pgc sweep``: the budget solver's rate-distortion curve, with uniform methods on the same axes."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import click

from pgcompress.atomic import atomic_write
from pgcompress.budget.accounting import MODES
from pgcompress.checkpoint import load_checkpoint
from pgcompress.cli.eval_cmd import _eval_options
from pgcompress.cli.options import plot_or_note
from pgcompress.cli.pack_cmd import calib_config, calib_options
from pgcompress.errors import PgcError


def parse_budgets(text: str) -> list[int]:
    """'4e6,6e6,16000000' -> [4000000, 6000000, 16000000]; each a positive whole number of bytes."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        try:
            value = float(item)
        except ValueError:
            raise click.BadParameter(f"{item!r} is not a number of bytes", param_hint="--budgets") from None
        if value != int(value) or value < 1:
            raise click.BadParameter(f"{item!r} is not a positive whole number of bytes", param_hint="--budgets")
        out.append(int(value))
    if not out:
        raise click.BadParameter("give at least one budget", param_hint="--budgets")
    return out


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--budgets", required=True, help="Comma-separated byte budgets, e.g. 4e6,8e6,16e6.")
@click.option("--uniform", default="int4-gptq,int5-gptq,int6-gptq,int7-gptq,int8-gptq,int4-rtn,int5-rtn,int6-rtn,"
              "int7-rtn,int8-rtn,int8-ref", show_default=True,
              help="Uniform methods packed and scored on the same axes ('' for none).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("sweep"),
              show_default=True, help="Where the artifacts, sweep.json, sweep.md and sweep.png go.")
@click.option("--code", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The counted code file (train_gpt.py).")
@click.option("--submission", type=click.Choice(MODES), default="self-contained", show_default=True)
@click.option("--noise-replicates", type=click.IntRange(0), default=0, show_default=True,
              help="Also score this many nudged copies of the checkpoint (every matrix x (1 + 2^-12 N(0,1))) "
                   "on the same tokens: the eval's own noise, and whether each rise of the gap with budget "
                   "is beyond it (2 or more; 6 gives a usable sigma).")
@functools.partial(calib_options, with_model=False)
@_eval_options
def sweep(checkpoint, budgets, uniform, out_dir, code, submission, noise_replicates, calib_shards, calib_selfgen,
          calib_seqs, calib_seq_len, as_json, **eval_kw):
    """Pack CHECKPOINT at each budget and with each uniform method, evaluate every artifact.

    \b
    JSON: {"raw_val_bpb", "rows": [{"kind" ("solver" or "uniform"), "label" (the budget or method),
           "artifact", "model_bytes", "total_bytes", "headroom" (null for uniform), "val_bpb", "gap",
           "predicted", "best_fit" (solver rows: "itself", "solver B" or a method: the artifact of this
           sweep with the lowest measured val_bpb under that budget; "" for uniform rows),
           "best_fit_gap" (its gap; null for uniform rows)}]}, the same as OUT_DIR/sweep.json; with
           --noise-replicates also "noise" {"replicates", "relative_noise", "gaps", "sigma", "resolution"
           (2 sqrt(2) sigma)} and "inversions" [{"from", "to", "rise", "beyond_noise"}] (solver rows whose
           gap is above the next smaller budget's).

    Example: pgc sweep final_model.pt --budgets 4e6,8e6,12e6,16e6 --data-path data/ --tokenizer sp.model
    """
    from pgcompress.budget import prepare
    from pgcompress.budget.noise import noise_floor
    from pgcompress.budget.sweep import noise_markdown, plot_sweep, rows_json, rows_markdown, run_sweep
    from pgcompress.cli.eval_cmd import _options

    budget_list = parse_budgets(budgets)
    if noise_replicates == 1:
        raise click.BadParameter("one copy gives no spread: use 0 (off) or at least 2", param_hint="--noise-replicates")
    methods = [m.strip() for m in uniform.split(",") if m.strip()]
    opts = _options(as_json=as_json, **eval_kw)
    calib = calib_config(calib_shards, calib_selfgen, calib_seqs, calib_seq_len, eval_kw["model_code"],
                         eval_kw["device"] or "cpu", solver=True)
    sd = load_checkpoint(checkpoint)
    prepared = prepare(sd, calib, submission == "self-contained", progress=not (as_json or eval_kw["quiet"]))
    rows, raw = run_sweep(checkpoint, sd, budget_list, prepared, out_dir, opts, tuple(methods), code, submission,
                          progress=not (as_json or eval_kw["quiet"]))
    if not rows:
        raise PgcError("nothing was packed")
    noise = noise_floor(sd, raw.val_bpb, opts, noise_replicates) if noise_replicates else None
    atomic_write(out_dir / "sweep.json", rows_json(rows, raw, noise).encode())
    md = [f"# pgc sweep of {checkpoint.name}", "", f"raw val_bpb {raw.val_bpb:.8f}; distortion: {prepared.calibration}",
          ""] + rows_markdown(rows) + (["", *noise_markdown(rows, noise)] if noise else [])
    atomic_write(out_dir / "sweep.md", ("\n".join(md) + "\n").encode())
    if as_json:
        click.echo(json.dumps(json.loads(rows_json(rows, raw, noise))))
    else:
        for line in md[4:]:
            click.echo(line)
    # last: without matplotlib everything else is already written and printed
    drawn = plot_or_note(plot_sweep, rows, out_dir / "sweep.png", checkpoint.name)
    if not as_json:
        written = [out_dir / "sweep.md", out_dir / "sweep.json"] + ([out_dir / "sweep.png"] if drawn else [])
        click.echo(f"wrote {', '.join(map(str, written))}")
