"""``pgc inspect``: the tensor table of an artifact, without decoding any stream."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pgcompress.format import parse


@click.command()
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def inspect(artifact, as_json):
    """Show ARTIFACT's tensors, methods, codecs and bytes."""
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
        click.echo(json.dumps({"label": c.header.get("label"), "tensors": rows, "totals": totals}, sort_keys=True))
        return
    width = max([len(r["name"]) for r in rows] + [6])
    click.echo(f"{'tensor':<{width}}  {'shape':<14} {'dtype':<9} {'method':<10} {'codecs':<16} {'bytes':>11} {'bits/p':>6}")
    for r in rows:
        bits = 8 * r["bytes"] / r["numel"] if r["numel"] else 0.0
        codecs = ",".join(s["codec"] for s in r["streams"])
        shape = "x".join(map(str, r["shape"])) or "scalar"
        click.echo(f"{r['name']:<{width}}  {shape:<14} {r['dtype']:<9} {r['method']:<10} {codecs:<16} "
                   f"{r['bytes']:>11,} {bits:>6.3f}")
    click.echo(f"tensors:{totals['tensors']} params:{numel} header_bytes:{c.header_bytes} "
               f"total_bytes:{c.total_bytes} bits_per_param:{totals['bits_per_param']:.4f} label:{c.header.get('label')}")
