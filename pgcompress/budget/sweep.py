"""``pgc sweep``: the solver at several budgets and uniform methods on the same calibration, each
packed, written and scored by the reference eval: the rate-distortion table and its plot."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pgcompress import format as fmt
from pgcompress.atomic import atomic_write
from pgcompress.budget import Prepared, pack_to_budget
from pgcompress.budget.accounting import Accounting
from pgcompress.budget.noise import NoiseFloor, inversions
from pgcompress.errors import PgcError
from pgcompress.plotting import pyplot, save_png
from pgcompress.quant.base import QuantContext
from pgcompress.registry import get_method

DEFAULT_UNIFORM = tuple(f"int{b}-gptq" for b in range(4, 9)) + tuple(f"int{b}-rtn" for b in range(4, 9)) + ("int8-ref",)


@dataclass
class SweepRow:
    kind: str  # "solver" or "uniform"
    label: str  # budget or method
    total_bytes: int
    model_bytes: int
    headroom: int | None
    predicted: float
    val_bpb: float | None = None
    gap: float | None = None
    artifact: str = ""
    best_fit: str = ""  # solver rows: the sweep's artifact with the lowest measured val_bpb under this budget
    best_fit_gap: float | None = None


def pack_uniform(state_dict, method: str, prepared: Prepared, accounting: Accounting) -> tuple[bytes, int, float]:
    """(artifact, counted total, predicted damage) of one method for every tensor it applies to."""
    from pgcompress.pack import pack_report

    needs = get_method(method).needs_hessians
    if needs and not prepared.hessians:
        raise PgcError(f"uniform {method} needs calibration, which this sweep does not have")
    res = pack_report(state_dict, method=method, submittable=accounting.mode == "self-contained",
                      context=QuantContext(prepared.hessians))
    from pgcompress import unpack

    restored = unpack(res.data)
    methods = {t.name: t.method for t in fmt.parse(res.data).tensors}
    predicted = sum(prepared.distortion(n, state_dict[n].float(), restored[n].float()) * prepared.factor(n, methods[n])
                    for n in state_dict if state_dict[n].is_floating_point())
    return res.data, accounting.count(res.data).code_bytes + len(res.data), float(predicted)


def run_sweep(checkpoint: Path, state_dict, budgets: list[int], prepared: Prepared, out_dir: Path,
              eval_opts, uniform: tuple[str, ...] = DEFAULT_UNIFORM, code=None,
              submission: str = "self-contained", progress: bool = False) -> tuple[list[SweepRow], object]:
    """Pack at each budget and each uniform method, evaluate all (and the raw checkpoint) on the same
    tokens. Returns the rows and the raw checkpoint's eval result."""
    from pgcompress.eval.runner import run

    out_dir.mkdir(parents=True, exist_ok=True)
    accounting = Accounting(code, submission)
    rows: list[SweepRow] = []
    for b in sorted(budgets):
        sol = pack_to_budget(state_dict, b, code, submission=submission, prepared=prepared, progress=progress)
        path = out_dir / f"budget_{b}.pgc"
        atomic_write(path, sol.data)
        rows.append(SweepRow("solver", str(b), sol.total_bytes, sol.model_bytes, sol.headroom, sol.predicted,
                             artifact=str(path)))
    for m in uniform:
        if get_method(m).needs_hessians and not prepared.hessians:
            continue
        data, total, predicted = pack_uniform(state_dict, m, prepared, accounting)
        path = out_dir / f"uniform_{m}.pgc"
        atomic_write(path, data)
        rows.append(SweepRow("uniform", m, total, len(data), None, predicted, artifact=str(path)))
    results = run([checkpoint] + [Path(r.artifact) for r in rows], replace(eval_opts, label=None))
    raw = results[0]
    for r, res in zip(rows, results[1:]):
        r.val_bpb, r.gap = res.val_bpb, res.val_bpb - raw.val_bpb
    mark_best_fits(rows)
    return rows, raw


def mark_best_fits(rows: list[SweepRow]) -> None:
    """Each solver row's ``best_fit``: of every artifact the sweep measured (solver or uniform), the
    one with the lowest val_bpb whose counted total is under that row's budget (ties: fewer bytes).
    This is the operational rate-distortion curve, non-increasing by construction, and what to submit
    at that budget; it is chosen on the sweep's own eval tokens, so where it is not the row itself,
    the two differ by less than that evaluation can tell apart."""
    measured = [r for r in rows if r.val_bpb is not None]
    for r in rows:
        if r.kind != "solver" or r.val_bpb is None:
            continue
        fits = [o for o in measured if o.total_bytes < int(r.label)]
        best = min(fits, key=lambda o: (o.val_bpb, o.total_bytes))
        r.best_fit = "itself" if best is r else (f"solver {int(best.label):,}" if best.kind == "solver" else best.label)
        r.best_fit_gap = best.gap


def rows_json(rows: list[SweepRow], raw, noise: NoiseFloor | None = None) -> str:
    out = {"raw_val_bpb": raw.val_bpb, "rows": [asdict(r) for r in rows]}
    if noise is not None:
        out["noise"] = noise.as_dict()
        out["inversions"] = solver_inversions(rows, noise)
    return json.dumps(out, indent=1, sort_keys=True) + "\n"


def solver_inversions(rows: list[SweepRow], noise: NoiseFloor) -> list[dict]:
    return inversions([(int(r.label), r.gap) for r in rows if r.kind == "solver" and r.gap is not None],
                      noise.resolution)


def noise_markdown(rows: list[SweepRow], noise: NoiseFloor) -> list[str]:
    """What this eval can resolve, and each rise of the solver's gap with budget read against it."""
    lines = [f"Eval noise: {noise.replicates} copies of the checkpoint with every matrix nudged by "
             f"(1 + {noise.relative_noise:.3g} N(0,1)) score gaps of sigma {noise.sigma:.6f} bpb on these tokens, "
             f"so two gaps closer than 2 sqrt(2) sigma = {noise.resolution:.6f} are not ordered by this eval."]
    for inv in solver_inversions(rows, noise):
        lines.append(f"- gap rises {inv['from']:,} -> {inv['to']:,} B by {inv['rise']:+.6f}: "
                     + ("beyond the eval's noise" if inv["beyond_noise"] else "within the eval's noise"))
    return lines


def rows_markdown(rows: list[SweepRow]) -> list[str]:
    lines = ["| kind | budget / method | total bytes | headroom | val_bpb | gap | predicted damage | "
             "best measured that fits (gap) |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        head = "" if r.headroom is None else f"{r.headroom:,}"
        label = f"{int(r.label):,}" if r.kind == "solver" else r.label
        best = "" if not r.best_fit else (r.best_fit if r.best_fit == "itself" else f"{r.best_fit} ({r.best_fit_gap:+.6f})")
        lines.append(f"| {r.kind} | {label} | {r.total_bytes:,} | {head} | {r.val_bpb:.8f} | {r.gap:+.6f} | "
                     f"{r.predicted:.4e} | {best} |")
    return lines


def plot_sweep(rows: list[SweepRow], path: Path, title: str = "") -> None:
    """Gap against counted bytes, solver and uniform methods. Raises PlotUnavailable without matplotlib."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4.5))
    sol = [r for r in rows if r.kind == "solver"]
    ax.plot([r.total_bytes / 1e6 for r in sol], [max(r.gap, 1e-6) for r in sol], "o-", label="pgc solver", lw=2)
    for family, marker in (("gptq", "s"), ("rtn", "^")):
        pts = [r for r in rows if r.kind == "uniform" and r.label.endswith(family)]
        if pts:
            ax.plot([r.total_bytes / 1e6 for r in pts], [max(r.gap, 1e-6) for r in pts], marker + "--",
                    label=f"uniform int4..8 {family}")
    front = [r for r in sol if r.best_fit_gap is not None]
    if any(r.best_fit != "itself" for r in front):
        ax.plot([int(r.label) / 1e6 for r in front], [max(r.best_fit_gap, 1e-6) for r in front], "k:", lw=1,
                label="best measured that fits (at the budget)")
    ref = [r for r in rows if r.label == "int8-ref"]
    if ref:
        ax.plot([ref[0].total_bytes / 1e6], [max(ref[0].gap, 1e-6)], "k*", ms=12, label="int8-ref")
    ax.set_yscale("log")
    ax.set_xlabel("counted total (code + decoder + artifact), MB")
    ax.set_ylabel("val_bpb gap vs raw checkpoint")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_png(fig, path, dpi=140)
