"""``pgc demo`` on its real default configuration, twice, each in a fresh cache: once as it comes,
once beside a CPU burner on every core. Both must print the same model (hash of the trained
weights), the same artifact bytes (sha256 of every file scored) and the same val_bpb.

    python -m bench.demo_determinism   -> bench/results/demo_determinism.{md,json}

Exits 1 if the two runs differ (after writing the results). The "quiet" run's wall time is the
demo's cold-start time; the load average before each run says how quiet the machine really was.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.machine import machine_description

RESULTS = Path(__file__).resolve().parent / "results"
BURN = "while True:\n    pass\n"


@contextlib.contextmanager
def burners(n: int):
    """n busy Python processes (one per core), stopped on exit."""
    procs = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(n)]
    try:
        time.sleep(2)  # let them take the cores before the demo starts
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def run_demo(label: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="pgc-demo-") as cache:
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "pgcompress.cli", "demo", "--cache-dir", cache, "--json"],
                           capture_output=True, text=True)
        wall = time.perf_counter() - t0
        load_after = os.getloadavg()[0]
    if r.returncode != 0:
        raise SystemExit(f"{label}: pgc demo exited {r.returncode}: {r.stderr.strip()[-2000:]}")
    out = json.loads(r.stdout)
    return {"label": label, "wall_s": wall, "load_before": load, "load_after": load_after,
            "model_sha256": out["model_sha256"],
            "budget": out["budget"], "seconds": out["seconds"], "train": out["train"],
            "rows": [{k: row[k] for k in ("row", "artifact_bytes", "sha256", "val_bpb", "gap_bpb", "fits")}
                     for row in out["results"]],
            "solver": out["solver"]}


def identical(a: dict, b: dict) -> bool:
    return a["model_sha256"] == b["model_sha256"] and all(
        (x["row"], x["artifact_bytes"], x["sha256"], x["val_bpb"]) == (y["row"], y["artifact_bytes"], y["sha256"], y["val_bpb"])
        for x, y in zip(a["rows"], b["rows"]))


def markdown(machine: str, runs: list[dict], same: bool, cores: int) -> str:
    quiet, loaded = runs
    lines = [
        "# pgc demo: determinism under load, and its cold-start time",
        "",
        f"Machine: {machine}.",
        "",
        f"`pgc demo --json` on its default configuration in a fresh cache, run twice: as it comes, then beside "
        f"{cores} CPU burners (`while True: pass`, one per core). The 1-minute load average before and at "
        f"the end of each run is in the table (the demo itself adds about 1)"
        + (f"; the first run started at {quiet['load_before']:.2f}, not 0: earlier work was still in the "
           f"average or running beside it" if quiet["load_before"] >= 0.5 else "") + ".",
        "",
        f"**{'Identical' if same else 'DIFFERENT'}**: model sha256 `{quiet['model_sha256'][:16]}...` "
        f"{'in both runs' if same else 'vs `' + loaded['model_sha256'][:16] + '...`'}; every file scored has the "
        f"same bytes and the same val_bpb.",
        "",
        "| run | wall time | train | pack | eval | load before | load at end |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        s = r["seconds"]
        lines.append(f"| {r['label']} | {r['wall_s']:.1f} s | {s['train']:.1f} s | {s['pack']:.1f} s | "
                     f"{s['eval']:.1f} s | {r['load_before']:.2f} | {r['load_after']:.2f} |")
    lines += ["", f"Budget {quiet['budget']:,} B; {quiet['train']['steps']} steps, train loss "
              f"{quiet['train']['final_loss']:.3f}.", "",
              "| row | bytes | val_bpb | gap | sha256 (both runs) |", "|---|---:|---:|---:|---|"]
    for x, y in zip(quiet["rows"], loaded["rows"]):
        sha = x["sha256"][:16] + ("..." if x["sha256"] == y["sha256"] else f"... vs {y['sha256'][:16]}...")
        lines.append(f"| {x['row']} | {x['artifact_bytes']:,} | {x['val_bpb']:.8f} | {x['gap_bpb']:+.6f} | `{sha}` |")
    methods = ", ".join(f"{m} x{n}" for m, n in quiet["solver"]["methods"].items())
    lines += ["", f"Solver: {methods}; headroom {quiet['solver']['headroom']:,} B.", ""]
    return "\n".join(lines)


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    machine = machine_description()
    cores = os.cpu_count() or 1
    quiet = run_demo("as it comes")
    with burners(cores):
        loaded = run_demo(f"beside {cores} CPU burners")
    runs = [quiet, loaded]
    same = identical(quiet, loaded)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "demo_determinism.json").write_text(
        json.dumps({"machine": machine, "identical": same, "runs": runs}, indent=1, sort_keys=True) + "\n")
    text = markdown(machine, runs, same, cores)
    (RESULTS / "demo_determinism.md").write_text(text)
    print(text)
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
