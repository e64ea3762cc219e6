"""``pgc inspect``: the tensor table of an artifact, without decoding any stream."""

from __future__ import annotations

from pathlib import Path

import click

from pgcompress.cli.options import echo_json, json_option
from pgcompress.format import parse
from pgcompress.text_table import aligned


@click.command()
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def inspect(artifact, as_json):
    """Show ARTIFACT's tensors, methods, codecs and bytes.

    \b
    JSON: {"label", "tensors": [{"name", "shape", "dtype", "method", "params", "numel", "bytes",
           "streams": [{"role", "dtype", "count", "codec", "offset", "size", "crc32"}]}],
           "totals": {"tensors", "params", "header_bytes", "stream_bytes", "total_bytes", "bits_per_param"}}.

    Example: pgc inspect final_model.pgc
    """
    data = artifact.read_bytes()
    c = parse(data, str(artifact))
    rows = [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "method": t.method,
             "params": t.params, "numel": t.numel, "bytes": t.stored_bytes,
             "streams": [{"role": s.role, "dtype": s.info.dtype, "count": s.info.count, "codec": s.codec,
                          "offset": s.offset, "size": s.size, "crc32": s.crc} for s in t.streams]}
            for t in c.tensors]
    numel = sum(t.numel for t in c.tensors)
    totals = {"tensors": len(rows), "params": numel, "header_bytes": c.header_bytes,
              "stream_bytes": c.total_bytes - c.header_bytes, "total_bytes": c.total_bytes,
              "bits_per_param": 8 * c.total_bytes / numel if numel else 0.0}
    if as_json:
        echo_json({"label": c.header.get("label"), "tensors": rows, "totals": totals})
        return
    table = [("tensor", "shape", "dtype", "method", "codecs", "bytes", "bits/p")]
    for r in rows:
        bits = 8 * r["bytes"] / r["numel"] if r["numel"] else 0.0
        table.append((r["name"], "x".join(map(str, r["shape"])) or "scalar", r["dtype"], r["method"],
                      ",".join(s["codec"] for s in r["streams"]), f"{r['bytes']:,}", f"{bits:.3f}"))
    for line in aligned(table, right=frozenset({5, 6})):
        click.echo(line)
    click.echo(f"tensors:{totals['tensors']} params:{numel} header_bytes:{c.header_bytes} "
               f"total_bytes:{c.total_bytes} bits_per_param:{totals['bits_per_param']:.4f} label:{c.header.get('label')}")
