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
        parts = slice_rows(r)
        table.append(_line(r["name"], r["shape"], r["dtype"], f"slices x{len(parts)}" if parts else r["method"],
                           [] if parts else r["streams"], r["bytes"], r["numel"]))
        for i, (method, streams) in enumerate(parts):  # a bank stored slice by slice: one line per slice
            table.append(_line(f"  [{i}]", r["shape"][1:], "", method, streams, sum(s["size"] for s in streams),
                               r["numel"] // max(1, r["shape"][0])))
    for line in aligned(table, right=frozenset({5, 6})):
        click.echo(line)
    click.echo(f"tensors:{totals['tensors']} params:{numel} header_bytes:{c.header_bytes} "
               f"total_bytes:{c.total_bytes} bits_per_param:{totals['bits_per_param']:.4f} label:{c.header.get('label')}")


def slice_rows(row: dict) -> list[tuple[str, list[dict]]]:
    """(method, streams) of each slice of a ``slices`` tensor (quant/slices.py); [] for any other."""
    parts = row["params"].get("parts") if row["method"] == "slices" else None
    if not isinstance(parts, list):
        return []
    out = [(str(p.get("method")) if isinstance(p, dict) else "?", []) for p in parts]
    for s in row["streams"]:
        i = s["role"].split(".", 1)[0]
        if i.isdigit() and int(i) < len(out):
            out[int(i)][1].append(s)
    return out


def _line(name, shape, dtype, method, streams, nbytes, numel) -> tuple:
    codecs = ",".join(dict.fromkeys(s["codec"] for s in streams)) or "-"
    bits = 8 * nbytes / numel if numel else 0.0
    return (name, "x".join(map(str, shape)) or "scalar", dtype, method, codecs, f"{nbytes:,}", f"{bits:.3f}")
