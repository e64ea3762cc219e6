"""``pgc pack``: checkpoint -> artifact, with the challenge's byte accounting."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pgcompress.atomic import atomic_write
from pgcompress.checkpoint import load_checkpoint
from pgcompress.errors import BudgetError
from pgcompress.pack import pack_report
from pgcompress.quant.calibration import CalibConfig
from pgcompress.quant.quantize import context_for
from pgcompress.quant.policy import MethodSpec
from pgcompress.submission.wrap import is_wrapped

CHALLENGE_BUDGET = 16_000_000


def code_form(code: Path | None) -> str | None:
    """'wrapped' for a pgc wrap self-extracting script, 'raw' for plain source, None without --code."""
    if code is None or not code.is_file():
        return None
    return "wrapped" if is_wrapped(code.read_text(encoding="utf-8", errors="replace")) else "raw"


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Artifact file to write (atomically).")
@click.option("--budget", type=int, default=CHALLENGE_BUDGET, show_default=True,
              help="Byte cap for code + artifact; the total must be strictly below it.")
@click.option("--code", type=click.Path(dir_okay=False, path_type=Path),
              help="The counted code file (train_gpt.py); its bytes count toward the budget.")
@click.option("--method", default="int8-ref", show_default=True,
              help="Method spec: a name, and/or GLOB=NAME overrides, comma-separated (see 'pgc methods').")
@click.option("--codec", default="auto", show_default=True,
              help="Stream codec: 'auto' picks the smallest per stream; a name forces it where it applies.")
@click.option("--submittable", is_flag=True, help="Use only codecs a submission's decoder can read.")
@click.option("--calib-shards", metavar="GLOB",
              help="Calibrate GPTQ/LQER Hessians on windows of these token shards (train data).")
@click.option("--calib-selfgen", type=click.IntRange(min=1), metavar="N",
              help="Calibrate on N sequences the model samples itself (no data needed).")
@click.option("--calib-seqs", type=click.IntRange(min=1), default=CalibConfig.seqs, show_default=True,
              help="Sequences taken from --calib-shards.")
@click.option("--calib-seq-len", type=click.IntRange(min=2), default=CalibConfig.seq_len, show_default=True,
              help="Tokens per calibration sequence.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def pack(checkpoint, output, budget, code, method, codec, submittable, calib_shards, calib_selfgen, calib_seqs,
         calib_seq_len, as_json):
    """Pack CHECKPOINT (torch.save state dict, .safetensors or .ptz) into an artifact."""
    spec = MethodSpec.parse(method)  # cheap checks before the slow load
    if calib_shards and calib_selfgen:
        raise click.UsageError("use --calib-shards or --calib-selfgen, not both")
    calib = None
    if calib_shards or calib_selfgen:
        calib = CalibConfig(shards=calib_shards, selfgen=calib_selfgen or 0, seqs=calib_seqs, seq_len=calib_seq_len)
    sd = load_checkpoint(checkpoint)
    context = context_for(sd, spec, calib, progress=not as_json)
    try:
        result = pack_report(sd, budget, code, method=spec, codec=codec, submittable=submittable,
                             context=context, progress=not as_json)
    except BudgetError as exc:
        raise BudgetError(f"{output} not written: {exc}", exc.total_bytes, exc.budget) from None
    atomic_write(output, result.data)
    summary = {"artifact": str(output), "code_bytes": result.code_bytes, "model_bytes": result.model_bytes,
               "total_bytes": result.total_bytes, "budget": budget, "headroom": budget - 1 - result.total_bytes,
               "method": method, "code_form": code_form(code)}
    if result.decoder_bytes is not None:
        summary["decoder_bytes"] = result.decoder_bytes
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
        return
    extra = f" decoder_bytes:{result.decoder_bytes}" if result.decoder_bytes is not None else ""
    click.echo(f"code_bytes:{result.code_bytes} model_bytes:{result.model_bytes} "
               f"total_bytes:{result.total_bytes} budget:{budget} headroom:{summary['headroom']}{extra}")
    if code is not None:
        click.echo(f"counted {code} as {summary['code_form']} code ({result.code_bytes:,} bytes)")
    if result.decoder_bytes is not None:
        click.echo(f"the submission decoder for this artifact is {result.decoder_bytes:,} bytes minified "
                   "(pgc decoder writes it); it lives in train_gpt.py, so its bytes count as code")
    click.echo(f"wrote {output} ({result.model_bytes:,} bytes, method {method})")
