"""``pgc wrap``: minify + compress a script into a self-extracting stub; report counted bytes."""

from __future__ import annotations

from pathlib import Path

import click

from pgcompress.atomic import atomic_write, check_target
from pgcompress.cli.options import echo_json, json_option
from pgcompress.errors import PgcError
from pgcompress.submission.wrap import wrap_source


@click.command()
@click.argument("script", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the wrapped script.")
@json_option
def wrap(script, output, as_json):
    """Wrap SCRIPT (e.g. train_gpt.py) the way records count their code.

    \b
    JSON: {"wrapped" (the file written), "raw_bytes" (SCRIPT as text, UTF-8), "minified_bytes",
           "counted_bytes" (the wrapped file's size), "compressor" ("lzma" or "brotli"),
           "ratio" (raw_bytes / counted_bytes)}; the same keys as the plain output line.

    Example: pgc wrap train_gpt.py -o train_gpt.wrapped.py
    """
    check_target(output)
    try:
        source = script.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PgcError(f"{script}: not UTF-8 text (byte {exc.start}); wrap takes a Python source file") from None
    w = wrap_source(source, script.name)
    atomic_write(output, w.text.encode("utf-8"))
    ratio = w.raw_bytes / max(1, w.counted_bytes)
    if as_json:
        echo_json({"wrapped": str(output), "raw_bytes": w.raw_bytes, "minified_bytes": w.minified_bytes,
                   "counted_bytes": w.counted_bytes, "compressor": w.compressor, "ratio": ratio})
        return
    click.echo(f"wrapped:{output} raw_bytes:{w.raw_bytes} minified_bytes:{w.minified_bytes} "
               f"counted_bytes:{w.counted_bytes} compressor:{w.compressor} ratio:{ratio:.2f}")
