"""``pgc decoder``: write the self-contained decoder module a submission carries for an artifact."""

from __future__ import annotations

from pathlib import Path

import click

from pgcompress.atomic import atomic_write, check_target
from pgcompress.submission.decoder import build_decoder


@click.command()
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the decoder module (e.g. decode_artifact.py).")
def decoder(artifact, output):
    """Write a module defining decode(data) -> state dict for ARTIFACT (torch, numpy, brotli only)."""
    check_target(output)
    src = build_decoder(artifact.read_bytes(), str(artifact))
    atomic_write(output, src.encode("utf-8"))
    click.echo(f"decoder:{output} bytes:{len(src.encode('utf-8'))}")
