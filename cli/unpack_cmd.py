"""``pgc unpack``: artifact -> dequantized weights (.safetensors or .pt)."""

from __future__ import annotations

import io
from pathlib import Path

import click
import torch

from pgcompress.atomic import atomic_write, check_target
from pgcompress.errors import PgcError
from pgcompress.unpack import unpack as unpack_artifact


@click.command()
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output file: .safetensors, or .pt (a plain torch.save'd state dict).")
def unpack(artifact, output):
    """Write ARTIFACT's dequantized state dict."""
    if output.suffix not in (".safetensors", ".pt", ".pth"):
        raise PgcError(f"{output}: unknown output type {output.suffix!r}; use .safetensors or .pt")
    check_target(output)
    sd = unpack_artifact(artifact.read_bytes(), str(artifact))
    if output.suffix == ".safetensors":
        from safetensors.torch import save

        data = save(sd)
    else:
        buf = io.BytesIO()
        torch.save(sd, buf)
        data = buf.getvalue()
    atomic_write(output, data)
    click.echo(f"wrote {output} ({len(sd)} tensors, {sum(t.numel() for t in sd.values()):,} values)")
