"""The test suite's wall time at given commits, each from a fresh clone beside ``../shared``, run the
way CI runs it (``bash .ci/run``: a new venv and its installs, pytest, then ``pgc demo``), one commit
after another on this machine, nothing else started by the script.

    python -m bench.suite_time 014bd81 HEAD   -> bench/results/suite_time.{md,json}

Each clone goes to ``../suite_time_<sha>`` (CI's layout: ``../shared`` must be its sibling) and is
removed afterwards unless ``--keep``. ``PYTEST_ADDOPTS=--durations=40`` is set so the log lists the
slowest tests whatever the commit's own pytest options. pytest's own "N passed in S s" is the
suite's time; the whole ``.ci/run`` (installs and the demo included) is timed too. Runs are appended
to the results (earlier rows are kept), so commits measured in separate sessions stay side by side
with the machine and the load average each was measured under.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from bench.machine import cpu_name, machine_description

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
SUMMARY = re.compile(r"^=*\s*(?P<what>(?:\d+ \w+(?:, )?)+).*? in (?P<secs>[\d.]+)s", re.M)
SLOW = re.compile(r"^\s*(?P<secs>[\d.]+)s (?P<phase>call|setup|teardown)\s+(?P<test>\S+)$", re.M)


def measure(commit: str, keep: bool) -> dict:
    sha = subprocess.run(["git", "rev-parse", commit], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    clone = REPO.parent / f"suite_time_{sha[:7]}"
    if clone.exists():
        shutil.rmtree(clone)
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", sha], cwd=clone, check=True)
    env = dict(os.environ, PYTEST_ADDOPTS="--durations=40")
    env.pop("VIRTUAL_ENV", None)
    load = os.getloadavg()[0]
    machine = machine_description().split(", load average")[0]  # the load has its own column
    t0 = time.monotonic()
    r = subprocess.run(["bash", ".ci/run"], cwd=clone, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if not keep:
        shutil.rmtree(clone, ignore_errors=True)
    return row(sha[:7], r.stdout + r.stderr, wall, r.returncode, load, machine)


def row(commit: str, log: str, wall: float, rc: int, load: float, machine: str, ended: float | None = None) -> dict:
    """One result row from a ``.ci/run`` log (kept beside the results without pip's location warnings)."""
    (RESULTS / f"suite_time_{commit}.log").write_text(
        "\n".join(line for line in log.splitlines() if not line.startswith("WARNING: Location")) + "\n")
    m = None
    for m in SUMMARY.finditer(log):
        pass
    slow = [(float(s.group("secs")), s.group("phase"), s.group("test")) for s in SLOW.finditer(log)][:10]
    return {"commit": commit, "pytest": m.group("what") if m else "no summary line",
            "pytest_s": float(m.group("secs")) if m else None, "ci_run_s": round(wall, 1), "rc": rc,
            "load_at_start": round(load, 2), "cpu": cpu_name(), "machine": machine,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ended)), "slowest": slow}


def write(rows: list[dict]) -> None:
    (RESULTS / "suite_time.json").write_text(json.dumps(rows, indent=1) + "\n")
    out = ["# Test suite wall time (fresh clone, `bash .ci/run`)", "",
           "Written by `python -m bench.suite_time COMMIT ...`. pytest s: pytest's own summary time; .ci/run s: the",
           "whole CI entry point (new venv and installs, pytest, then `pgc demo`). The full logs are",
           "`suite_time_<commit>.log` beside this file.", "",
           "| commit | pytest | pytest s | .ci/run s | exit | load at start | ended | machine |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['commit']} | {r['pytest']} | {r['pytest_s']} | {r['ci_run_s']} | {r['rc']} | "
                   f"{r['load_at_start']} | {r['date']} | {r['machine']} |")
    notes = [f"- {r['commit']}: {r['note']}" for r in rows if r.get("note")]
    out += ["", "Notes:", "", *notes] if notes else []
    for r in rows:
        out += ["", f"## Slowest tests at {r['commit']}", "", "| s | phase | test |", "|---|---|---|"]
        out += [f"| {s} | {p} | `{t}` |" for s, p, t in r["slowest"]]
    (RESULTS / "suite_time.md").write_text("\n".join(out) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("commits", nargs="+", help="commits to measure, in this order (e.g. 014bd81 HEAD)")
    ap.add_argument("--keep", action="store_true", help="keep the clones")
    ap.add_argument("--from-log", nargs=4, metavar=("LOG", "WALL_S", "RC", "LOAD"),
                    help="record the one commit given from a .ci/run log of a run made by hand the same way "
                         "(fresh clone, PYTEST_ADDOPTS=--durations=40), with its wall time, exit code and "
                         "load average at start; the machine is this one")
    ap.add_argument("--note", default="", help="a sentence shown under the table for these rows")
    args = ap.parse_args()
    path = RESULTS / "suite_time.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    for commit in args.commits:
        if args.from_log:
            log, wall, rc, load = args.from_log
            sha = subprocess.run(["git", "rev-parse", commit], cwd=REPO, capture_output=True, text=True,
                                 check=True).stdout.strip()
            new = row(sha[:7], Path(log).read_text(), float(wall), int(rc), float(load),
                      machine_description().split(", load average")[0], Path(log).stat().st_mtime)
        else:
            new = measure(commit, args.keep)
        new["note"] = args.note
        rows = [r for r in rows if (r["commit"], r["cpu"]) != (new["commit"], new["cpu"])] + [new]
        write(rows)
        print(f"{new['commit']}: {new['pytest']} in {new['pytest_s']} s; .ci/run {new['ci_run_s']} s, exit {new['rc']}")


if __name__ == "__main__":
    main()
