"""``pgc methods``: the registered quantization methods, one line each."""

import click

from pgcompress.registry import method_families


@click.command()
def methods():
    """List the quantization methods (name pattern and what it does)."""
    for pattern, summary in method_families():
        click.echo(f"{pattern:<28} {summary}")
