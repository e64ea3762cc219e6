"""``pgc decoder``: write the self-contained decoder module a submission carries for an artifact."""

from __future__ import annotations

from pathlib import Path

import click

from pgcompress.atomic import atomic_write, check_target
from pgcompress.cli.options import echo_json, json_option
from pgcompress.submission.decoder import build_decoder


@click.command()
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the decoder module (e.g. decode_artifact.py).")
@json_option
def decoder(artifact, output, as_json):
    """Write a module defining decode(data) -> state dict for ARTIFACT (torch, numpy, brotli only).

    \b
    JSON: {"decoder" (the file written), "bytes" (its size, as it counts in a submission)}.

    Example: pgc decoder final_model.pgc -o decode_artifact.py
    """
    check_target(output)
    data = build_decoder(artifact.read_bytes(), str(artifact)).encode("utf-8")
    atomic_write(output, data)
    if as_json:
        echo_json({"decoder": str(output), "bytes": len(data)})
        return
    click.echo(f"decoder:{output} bytes:{len(data)}")
