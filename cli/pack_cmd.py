"""``pgc pack``: checkpoint -> the best artifact under the budget (or one forced method), with the
challenge's byte accounting: code file + artifact + the decoder the submission carries."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pgcompress.atomic import atomic_write, check_target
from pgcompress.budget import CHALLENGE_BUDGET, DEFAULT_SELFGEN, DEFAULT_SELFGEN_S
from pgcompress.budget.accounting import MODES, Accounting
from pgcompress.checkpoint import load_checkpoint
from pgcompress.cli.options import echo_json, json_option, plot_or_note
from pgcompress.errors import BudgetError
from pgcompress.quant.calibration import CalibConfig
from pgcompress.quant.policy import MethodSpec
from pgcompress.quant.selfgen import DEFAULT_WINDOW


def default_output(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.stem + ".pgc")


def calib_options(f, with_model: bool = True):
    """Calibration flags shared by pack and sweep (sweep takes --model-code/--device from eval's)."""
    opts = [
        click.option("--calib-shards", metavar="GLOB",
                     help="Calibrate on windows of these token shards (train data).  [default: self-generated]"),
        click.option("--calib-selfgen", type=click.IntRange(min=1), metavar="N",
                     help=f"Calibrate on N sequences the model samples itself (no data needed; the default "
                          f"is {DEFAULT_SELFGEN}). Cost: the built-in GPT samples with a KV cache, N x "
                          f"--calib-seq-len token-forwards; a --model-code model has no cache, so each "
                          f"sampled token re-runs the {DEFAULT_WINDOW} before it, up to {DEFAULT_WINDOW}x that, "
                          f"and its default N is cut to fit ~{DEFAULT_SELFGEN_S / 60:.0f} minutes on this machine (the N "
                          f"and the estimate are logged). --calib-shards costs one forward."),
        click.option("--calib-seqs", type=click.IntRange(min=1), default=CalibConfig.seqs, show_default=True,
                     help="Sequences taken from --calib-shards."),
        click.option("--calib-seq-len", type=click.IntRange(min=2), default=CalibConfig.seq_len, show_default=True,
                     help="Tokens per calibration sequence."),
        click.option("--model-code", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                     help="A train_gpt.py whose model runs the calibration (architectures the built-in "
                          "reference GPT does not know; same contract as 'pgc eval --model-code')."),
        click.option("--device", default="cpu", show_default=True,
                     help="Where calibration runs (cpu, cuda, cuda:1)."),
    ]
    if not with_model:
        opts = opts[:4]
    for opt in reversed(opts):
        f = opt(f)
    return f


def calib_config(calib_shards, calib_selfgen, calib_seqs, calib_seq_len, model_code, device,
                 solver: bool) -> CalibConfig | None:
    if calib_shards and calib_selfgen:
        raise click.UsageError("use --calib-shards or --calib-selfgen, not both")
    if not (calib_shards or calib_selfgen or model_code or solver):
        return None
    sized = not (calib_shards or calib_selfgen)  # the default count: fitted to this machine's speed
    return CalibConfig(shards=calib_shards, selfgen=calib_selfgen or (0 if calib_shards else DEFAULT_SELFGEN),
                       selfgen_target_s=DEFAULT_SELFGEN_S if sized else None, seqs=calib_seqs,
                       seq_len=calib_seq_len, device=device,
                       model_code=None if model_code is None else str(model_code))


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Artifact file to write (atomically).  [default: CHECKPOINT with suffix .pgc]")
@click.option("--budget", type=click.IntRange(min=1), default=CHALLENGE_BUDGET, show_default=True,
              help="Byte cap for code + decoder + artifact; the total must be strictly below it.")
@click.option("--code", type=click.Path(dir_okay=False, path_type=Path),
              help="The counted code file (train_gpt.py, raw or 'pgc wrap'ped); its bytes count.")
@click.option("--submission", type=click.Choice(MODES), default="self-contained", show_default=True,
              help="self-contained: the generated decoder is pasted into train_gpt.py and counted, only "
                   "codecs it can read are used; import: train_gpt.py imports pgcompress.")
@click.option("--method", default=None,
              help="Force one method spec (a name and/or GLOB=NAME overrides, see 'pgc methods') instead "
                   "of the budget solver.")
@click.option("--codec", default="auto", show_default=True,
              help="With --method: 'auto' picks the smallest per stream; a name forces it where it applies.")
@click.option("--submittable", is_flag=True, hidden=True, help="Same as --submission self-contained.")
@calib_options
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the allocation (per tensor method, bits, bytes, predicted damage) as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a PNG of the stored bits per tensor.")
@json_option
@click.option("--quiet", is_flag=True, help="No progress bars; only the grep-able totals line on stdout.")
def pack(checkpoint, output, budget, code, submission, method, codec, submittable, calib_shards, calib_selfgen,
         calib_seqs, calib_seq_len, model_code, device, report_path, plot_path, as_json, quiet):
    """Pack CHECKPOINT (torch.save state dict, .safetensors or .ptz) into an artifact.

    Without --method the budget solver picks a method per tensor (bit widths 2-8, GPTQ, RTN,
    SDClip, LQER, float casts) for the least predicted val_bpb damage whose total fits.

    \b
    JSON: {"artifact", "method" ("solver" or the --method spec), "code_bytes", "decoder_bytes",
           "model_bytes" (the artifact's size), "total_bytes", "budget", "headroom", "code_form";
           with the solver also "predicted_damage", "distortion", "calibration", "rounds" and
           "tensors": [{"name", "shape", "method", "bits", "bytes", "predicted_damage", "basis"}]}.

    Example: pgc pack final_model.pt --code train_gpt.py --calib-shards 'data/fineweb_train_*.bin'
    """
    spec = MethodSpec.parse(method) if method else None  # cheap checks before the slow load
    if plot_path is not None and spec is not None:
        raise click.UsageError("--plot draws the solver's allocation; it needs no --method")
    output = output or default_output(checkpoint)
    check_target(output)  # fail now, not after calibration
    for extra in (report_path, plot_path):
        if extra is not None:
            check_target(extra)
    if submittable:
        submission = "self-contained"
    calib = calib_config(calib_shards, calib_selfgen, calib_seqs, calib_seq_len, model_code, device,
                         solver=spec is None)
    sd = load_checkpoint(checkpoint)
    accounting = Accounting(code, submission)
    progress = not (as_json or quiet)
    try:
        if spec is None:
            result = _solve(sd, budget, code, calib, submission, progress)
        else:
            result = _uniform(sd, budget, accounting, spec, codec, submission, calib, progress)
    except BudgetError as exc:
        raise BudgetError(f"{output} not written: {exc}", exc.total_bytes, exc.budget) from None
    atomic_write(output, result["data"])
    _emit(result, output, code, budget, report_path, plot_path, as_json, quiet)


def _solve(sd, budget, code, calib, submission, progress) -> dict:
    from pgcompress.budget import pack_to_budget
    from pgcompress.budget import report

    sol = pack_to_budget(sd, budget, code, calib, submission, progress=progress)
    return {"data": sol.data, "summary": {**report.summary(sol), "method": "solver"},
            "lines": report.table_lines(sol), "json": report.as_json(sol), "solution": sol}


def _uniform(sd, budget, accounting, spec, codec, submission, calib, progress) -> dict:
    from pgcompress.pack import pack_report
    from pgcompress.quant.quantize import context_for

    context = context_for(sd, spec, calib, progress=progress)
    res = pack_report(sd, None, None, method=spec, codec=codec, submittable=submission == "self-contained",
                      context=context, progress=progress)
    counted = accounting.count(res.data)
    total = counted.code_bytes + res.model_bytes
    if total >= budget:
        raise BudgetError(
            f"does not fit: {total:,} bytes (code {counted.code_bytes:,} incl. decoder {counted.decoder_bytes:,} "
            f"+ model {res.model_bytes:,}) is {total - budget + 1:,} bytes over the budget (must be below "
            f"{budget:,}); drop --method to let the budget solver choose per tensor", total, budget)
    summary = {"code_bytes": counted.code_bytes, "decoder_bytes": counted.decoder_bytes,
               "model_bytes": res.model_bytes, "total_bytes": total, "budget": budget,
               "headroom": budget - 1 - total, "code_form": counted.code_form, "method": str(spec)}
    return {"data": res.data, "summary": summary, "lines": [], "json": dict(summary), "solution": None}


def _emit(result, output, code, budget, report_path, plot_path, as_json, quiet) -> None:
    if report_path is not None:
        atomic_write(report_path, (json.dumps(result["json"], indent=1, sort_keys=True) + "\n").encode())
    _print(result, output, code, budget, as_json, quiet)
    if plot_path is not None:  # last: without matplotlib everything else is already done
        from pgcompress.budget.report import plot_allocation

        plot_or_note(plot_allocation, result["solution"], plot_path)


def _print(result, output, code, budget, as_json, quiet) -> None:
    s = result["summary"]
    if as_json:
        echo_json({"artifact": str(output), **result["json"], "method": s["method"]})
        return
    if not quiet:
        for line in result["lines"]:
            click.echo(line)
    click.echo(f"code_bytes:{s['code_bytes']} model_bytes:{s['model_bytes']} total_bytes:{s['total_bytes']} "
               f"budget:{budget} headroom:{s['headroom']} decoder_bytes:{s['decoder_bytes']}")
    if quiet:
        if s.get("headroom_note"):  # the table lines carry it otherwise
            click.echo(s["headroom_note"], err=True)
        return
    if code is not None:
        click.echo(f"counted {code} as {s['code_form']} code ({s['code_bytes']:,} bytes with the decoder)")
    if s["decoder_bytes"]:
        click.echo(f"the submission decoder for this artifact counts {s['decoder_bytes']:,} bytes "
                   "('pgc decoder' writes it; paste it into train_gpt.py)")
    click.echo(f"wrote {output} ({s['model_bytes']:,} bytes, method {s['method']})")
