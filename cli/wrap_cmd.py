"""``pgc wrap``: minify + compress a script into a self-extracting stub; report counted bytes."""

from __future__ import annotations

from pathlib import Path

import click

from pgcompress.atomic import atomic_write, check_target
from pgcompress.errors import PgcError
from pgcompress.submission.wrap import wrap_source


@click.command()
@click.argument("script", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the wrapped script.")
def wrap(script, output):
    """Wrap SCRIPT (e.g. train_gpt.py) the way records count their code."""
    check_target(output)
    try:
        source = script.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PgcError(f"{script}: not UTF-8 text (byte {exc.start}); wrap takes a Python source file") from None
    w = wrap_source(source, script.name)
    atomic_write(output, w.text.encode("utf-8"))
    click.echo(f"wrapped:{output} raw_bytes:{w.raw_bytes} minified_bytes:{w.minified_bytes} "
               f"counted_bytes:{w.counted_bytes} compressor:{w.compressor} "
               f"ratio:{w.raw_bytes / max(1, w.counted_bytes):.2f}")
