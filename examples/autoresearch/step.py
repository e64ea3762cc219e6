"""One step of an autoresearch loop: train briefly, pack under the budget, evaluate, log a row.

    python step.py --description "mlp x3" --reasoning "wider MLP was best in the ablation" \\
        [--script ../record_style/train_gpt.py] [--results results.tsv] [--log run.log] [KEY=VALUE ...]

KEY=VALUE pairs are environment overrides for the training script (the experiment). The script
trains, packs its artifact with pgcompress and prints the challenge's log lines; its output goes to
--log, and the lines ``grep "val_bpb\\|final_int8_zlib_roundtrip\\|model_params" run.log`` finds
are printed here too. Then one tab-separated row is appended to --results (untracked, created
with its header if missing):

    commit  val_bpb  artifact_mb  status  reasoning  description

status: ``crash`` if the run failed, printed no roundtrip line, or its counted total was not below
the budget; ``keep`` if its val_bpb is lower than every earlier ``keep`` row's; else ``discard``.
The exit code is 0 for keep and discard, 1 for crash, so a driver can revert a discarded change.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

HEADER = ["commit", "val_bpb", "artifact_mb", "status", "reasoning", "description"]
GREP = re.compile(r"val_bpb|final_int8_zlib_roundtrip|model_params")
EXACT = re.compile(r"^final_int8_zlib_roundtrip_exact val_loss:(\S+) val_bpb:(\S+)$", re.M)
TOTAL = re.compile(r"total_bytes:(\d+)")
DEFAULT_SCRIPT = Path(__file__).resolve().parent.parent / "record_style" / "train_gpt.py"


def commit_id(cwd: Path) -> str:
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True)
    if r.returncode:
        return "nogit"
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True).stdout.strip()
    return r.stdout.strip() + ("-dirty" if dirty else "")


def previous_best(results: Path) -> float | None:
    if not results.is_file():
        return None
    with results.open(newline="") as f:
        kept = [float(r["val_bpb"]) for r in csv.DictReader(f, delimiter="\t") if r["status"] == "keep"]
    return min(kept) if kept else None


def decide(val_bpb: float | None, fits: bool, best: float | None) -> str:
    if val_bpb is None or not fits:
        return "crash"
    return "keep" if best is None or val_bpb < best else "discard"


def clean(text: str) -> str:
    return " ".join(text.replace("\t", " ").split())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--script", type=Path, default=DEFAULT_SCRIPT)
    ap.add_argument("--results", type=Path, default=Path("results.tsv"))
    ap.add_argument("--log", type=Path, default=Path("run.log"))
    ap.add_argument("--description", required=True)
    ap.add_argument("--reasoning", default="")
    ap.add_argument("--budget", type=int, default=16_000_000)
    ap.add_argument("--timeout", type=float, default=None, help="seconds before the run counts as a crash")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = ap.parse_args()
    env = dict(os.environ, BUDGET=str(args.budget))
    for kv in args.overrides:
        key, sep, value = kv.partition("=")
        if not sep:
            ap.error(f"not KEY=VALUE: {kv!r}")
        env[key] = value
    try:
        run = subprocess.run([sys.executable, str(args.script)], env=env, capture_output=True, text=True,
                             timeout=args.timeout)
        out, rc = run.stdout + run.stderr, run.returncode
    except subprocess.TimeoutExpired:
        out, rc = f"timeout after {args.timeout} s", "timeout"
    ok = rc == 0
    args.log.write_text(out)
    for line in out.splitlines():
        if GREP.search(line):
            print(line)
    m = EXACT.search(out)
    val_bpb = float(m.group(2)) if ok and m else None
    total = TOTAL.findall(out)
    fits = bool(total) and int(total[-1]) < args.budget
    best = previous_best(args.results)
    status = decide(val_bpb, fits, best)
    artifact_mb = int(total[-1]) / 1e6 if total else 0.0
    row = [commit_id(args.script.resolve().parent), f"{val_bpb or 0.0:.8f}", f"{artifact_mb:.6f}", status,
           clean(args.reasoning), clean(args.description)]
    new = not args.results.is_file()
    with args.results.open("a", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        if new:
            w.writerow(HEADER)
        w.writerow(row)
    print(f"status:{status} val_bpb:{val_bpb or 0.0:.8f} best_before:{'none' if best is None else f'{best:.8f}'} "
          f"artifact_mb:{artifact_mb:.6f}")
    if not ok:
        print(f"crash: exit code {rc}; the last lines of {args.log}:", file=sys.stderr)
        print("\n".join(out.splitlines()[-5:]), file=sys.stderr)
    return 1 if status == "crash" else 0


if __name__ == "__main__":
    sys.exit(main())
