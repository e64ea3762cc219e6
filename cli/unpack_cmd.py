"""``pgc unpack``: artifact -> dequantized weights (.safetensors or .pt)."""

from __future__ import annotations

import io
from pathlib import Path

import click
import torch

from pgcompress.atomic import atomic_write, check_target
from pgcompress.cli.options import echo_json, json_option, quiet_option
from pgcompress.errors import PgcError
from pgcompress.unpack import unpack as unpack_artifact


@click.command()
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output file: .safetensors, or .pt (a plain torch.save'd state dict).")
@json_option
@quiet_option
def unpack(artifact, output, as_json, quiet):
    """Write ARTIFACT's dequantized state dict.

    \b
    JSON: {"output", "format" ("safetensors" or "pt"), "bytes" (the file's size), "values",
           "tensors": [{"name", "shape", "dtype", "numel"}] in the artifact's order}.

    Example: pgc unpack final_model.pgc -o final_model.safetensors
    """
    if output.suffix not in (".safetensors", ".pt", ".pth"):
        raise PgcError(f"{output}: unknown output type {output.suffix!r}; use .safetensors or .pt")
    check_target(output)
    sd = unpack_artifact(artifact.read_bytes(), str(artifact), progress=not (as_json or quiet))
    kind = "safetensors" if output.suffix == ".safetensors" else "pt"
    if kind == "safetensors":
        from safetensors.torch import save

        data = save(sd)
    else:
        buf = io.BytesIO()
        torch.save(sd, buf)
        data = buf.getvalue()
    atomic_write(output, data)
    values = sum(t.numel() for t in sd.values())
    if as_json:
        tensors = [{"name": k, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."),
                    "numel": t.numel()} for k, t in sd.items()]
        echo_json({"output": str(output), "format": kind, "bytes": len(data), "values": values, "tensors": tensors})
        return
    click.echo(f"wrote {output} ({len(sd)} tensors, {values:,} values, {len(data):,} bytes)")
