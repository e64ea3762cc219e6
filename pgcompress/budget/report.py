"""What the solver chose, for people (a table), scripts (JSON) and eyes (bits per tensor, PNG)."""

from __future__ import annotations


from pgcompress.budget.solver import Solution
from pgcompress.plotting import pyplot, save_png


def summary(solution: Solution) -> dict:
    s = solution
    return {"code_bytes": s.code_bytes, "decoder_bytes": s.counted.decoder_bytes, "model_bytes": s.model_bytes,
            "total_bytes": s.total_bytes, "budget": s.budget, "headroom": s.headroom,
            "code_form": s.counted.code_form, "predicted_damage": s.predicted,
            "distortion": s.distortion_kind, "calibration": s.calibration, "rounds": s.rounds,
            "headroom_note": s.headroom_note}


def as_json(solution: Solution) -> dict:
    out = summary(solution)
    out["tensors"] = [{"name": t.name, "shape": list(t.shape), "method": t.method, "bits": round(t.bits, 4),
                       "bytes": t.bytes, "predicted_damage": t.predicted, "basis": t.basis}
                      for t in solution.tensors]
    return out


def table_lines(solution: Solution) -> list[str]:
    rows = solution.tensors
    width = max([len(t.name) for t in rows] + [6])
    mwidth = max([len(t.method) for t in rows] + [6])
    lines = [f"{'tensor':<{width}}  {'method':<{mwidth}}  {'bits':>6}  {'bytes':>10}  {'predicted':>10}"]
    for t in rows:
        lines.append(f"{t.name:<{width}}  {t.method:<{mwidth}}  {t.bits:6.3f}  {t.bytes:10,}  {t.predicted:10.3e}")
    s = solution
    params = sum(_numel(t.shape) for t in rows)
    lines.append(f"model {s.model_bytes:,} B ({8 * s.model_bytes / max(1, params):.3f} bits/param) + code "
                 f"{s.code_bytes:,} B (decoder {s.counted.decoder_bytes:,} B) = {s.total_bytes:,} B; "
                 f"budget {s.budget:,}, headroom {s.headroom:,} B; predicted damage {s.predicted:.4e} "
                 f"({s.distortion_kind}: {s.calibration})")
    if s.headroom_note:
        lines.append(s.headroom_note)
    return lines


def plot_allocation(solution: Solution, path) -> None:
    """Bar chart of stored bits per parameter, one bar per tensor, coloured by method family.
    Raises PlotUnavailable without matplotlib."""
    plt = pyplot()

    rows = solution.tensors
    families = sorted({t.method.split("-")[0].split("+")[0] for t in rows})
    colours = {f: plt.cm.tab10(i % 10) for i, f in enumerate(families)}
    fig, ax = plt.subplots(figsize=(max(6, 0.18 * len(rows)), 4))
    ax.bar(range(len(rows)), [t.bits for t in rows],
           color=[colours[t.method.split("-")[0].split("+")[0]] for t in rows])
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([t.name for t in rows], rotation=90, fontsize=5)
    ax.set_ylabel("stored bits / parameter")
    ax.set_title(f"budget {solution.budget:,} B: total {solution.total_bytes:,} B")
    for f in families:
        ax.bar([], [], color=colours[f], label=f)
    ax.legend(fontsize=6)
    save_png(fig, path, dpi=150)


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
