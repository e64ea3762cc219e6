"""What ``pgc demo`` prints: the side-by-side table (bytes, val_bpb, gap, budget) and its JSON."""

from __future__ import annotations

from dataclasses import asdict

from pgcompress.demo.run import DemoReport
from pgcompress.text_table import aligned

HEADER = ("", "bytes", "val_bpb", "gap", "budget")


def fits(report: DemoReport, nbytes: int) -> str:
    left = report.budget - 1 - nbytes
    return f"fits ({left:,} B left)" if left >= 0 else f"over by {-left:,} B"


def report_lines(report: DemoReport) -> list[str]:
    """The comparison table, gaps against the unquantized checkpoint, then what was run."""
    base = report.rows[0].result
    table = [HEADER]
    for row in report.rows:
        r = row.result
        first = row.result is base
        table.append((row.name, f"{r.artifact_bytes:,}", f"{r.val_bpb:.5f}",
                      "" if first else f"{r.val_bpb - base.val_bpb:+.5f}", "" if first else fits(report, r.artifact_bytes)))
    lines = aligned(table, right=frozenset({1, 2, 3}))
    ref, solver = report.rows[1].result, report.rows[-1].result
    t = report.train
    methods = ", ".join(f"{m} x{n}" for m, n in report.solver["methods"].items())
    lines += [
        "",
        f"model: {report.model_params:,} params, trained {t.steps} steps ({t.tokens:,} tokens, {t.seconds:.0f} s, "
        f"train loss {t.final_loss:.3f}); val: {base.token_count:,} tokens of stdlib docstrings",
        f"budget: {report.budget:,} bytes, the artifact alone (train_gpt.py imports pgcompress): 16,000,000 scaled "
        f"like the baseline, reference export x 16,000,000 / 15,815,847",
        f"solver: per tensor {methods}",
        f"solver vs reference: {solver.artifact_bytes - ref.artifact_bytes:+,} bytes, "
        f"val_bpb {solver.val_bpb - ref.val_bpb:+.5f}",
    ]
    return lines


def report_json(report: DemoReport) -> dict:
    base = report.rows[0].result
    rows = [{**row.result.to_json(), "row": row.name, "sha256": row.sha256,
             "gap_bpb": row.result.val_bpb - base.val_bpb,
             "fits": None if i == 0 else row.result.artifact_bytes < report.budget}
            for i, row in enumerate(report.rows)]
    return {"results": rows, "budget": report.budget, "model_params": report.model_params,
            "model_sha256": report.model_sha256, "train": asdict(report.train), "solver": report.solver,
            "cached": report.cached, "seconds": report.seconds}
