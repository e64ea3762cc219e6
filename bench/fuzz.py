"""Fuzz the artifact readers, ``pgcompress.unpack`` and the generated submission decoder, and write
the report: outcome counts per target, the slowest case, peak RSS of each worker.

The harness (seed artifacts, mutations, workers under a memory cap and a per-case time limit)
is tests/fuzz_harness.py, shared with tests/test_format_fuzz.py; this runs it as a script in a
child process and writes bench/results/fuzz.{md,json}. Failing cases are saved to
bench/results/fuzz_failures/ (for tests/fuzz_corpus/).

    python -m bench.fuzz [--cases 10000] [--seed 0]   -> bench/results/fuzz.md / .json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.machine import machine_description

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / "tests" / "fuzz_harness.py"
RESULTS = REPO / "bench" / "results"


def report(res: dict, machine: str) -> str:
    lines = ["# Fuzzing the artifact readers", "",
             f"Machine: {machine}.", "",
             f"`python -m bench.fuzz --cases {res['cases']} --seed {res['seed']}`: {res['cases']:,} cases per target "
             f"({res['seeds']} seed artifacts: every method x every codec on a tiny model, plus tests/crafted.py), "
             f"{res['seconds']:.0f} s. Each target runs in a long-lived worker with RLIMIT_AS = "
             f"{res['memory_limit_bytes'] >> 30} GiB and a {res['time_limit_s']:.0f} s limit per case.", "",
             "| target | cases | decoded | FormatError | of which safety net | other | crash | timeout | slowest case (s) | peak RSS (MB) | worker restarts |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t, st in res["targets"].items():
        o = st["outcomes"]
        lines.append(f"| {t} | {st['cases']:,} | {o.get('decoded', 0):,} | {o.get('FormatError', 0) + o.get('net', 0):,} "
                     f"| {o.get('net', 0):,} | {o.get('other', 0)} | {o.get('crash', 0)} | {o.get('timeout', 0)} "
                     f"| {st['slowest'][0]:.3f} | {st['peak_rss_mb']:.0f} | {st['restarts']} |")
    lines += ["", "Slowest cases:", ""]
    lines += [f"- {t}: {st['slowest'][0]:.3f} s, {st['slowest'][1]}" for t, st in res["targets"].items()]
    lines += ["", f"Cases decoded by one target and refused by the other: {res['decoded_by_one_only']:,} "
              "(both run the same validating method decode functions; the fuzz decoder carries only the "
              "submittable codecs, so it refuses streams in the others, e.g. zstd, which the library decodes).", ""]
    for t, st in res["targets"].items():
        if st["failures"]:
            lines += [f"Failures ({t}):", ""] + [f"- {f}" for f in st["failures"][:20]] + [""]
    lines += ["\"safety net\": a FormatError raised because a codec or a method failed with another exception, "
              "which the container walk converts (the file is still refused with exit 2). Counted apart because "
              "each is a check a codec or method could make itself.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    machine = machine_description()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fuzz.json"
        subprocess.run([sys.executable, str(HARNESS), "--cases", str(args.cases), "--seed", str(args.seed),
                        "--failures", str(RESULTS / "fuzz_failures"), "--json", str(out)], check=True)
        res = json.loads(out.read_text())
    (RESULTS / "fuzz.json").write_text(json.dumps({"machine": machine, **res}, indent=1, sort_keys=True) + "\n")
    (RESULTS / "fuzz.md").write_text(report(res, machine))
    print(report(res, machine))


if __name__ == "__main__":
    main()
