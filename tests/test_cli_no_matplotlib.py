"""matplotlib is optional (the ``bench`` extra): on a plain install, `pgc sweep` and `pgc pack --plot`
write everything else, print one note line and exit 0.

The real CLI runs in a fresh process whose imports of matplotlib fail, as they would without it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from cli_run import CHILD_CWD
from conftest import reference_like_state_dict
from test_cli_consistency import eval_args, files  # noqa: F401 - files is a fixture

WITHOUT_MATPLOTLIB = """
import sys

class NoMatplotlib:
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoMatplotlib())
from pgcompress.cli.main import main
main(sys.argv[1:])
"""

NOTE = "pgc: note: plot skipped (matplotlib is not installed; pip install matplotlib)"


def pgc_without_matplotlib(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_MATPLOTLIB, *map(str, args)], capture_output=True,
                          text=True, timeout=600, cwd=CHILD_CWD)


def test_the_blocker_really_blocks():
    r = subprocess.run([sys.executable, "-c", WITHOUT_MATPLOTLIB.replace("from pgcompress.cli.main import main\n"
                                                                         "main(sys.argv[1:])", "import matplotlib")],
                       capture_output=True, text=True, timeout=120, cwd=CHILD_CWD)
    assert r.returncode == 1 and "ModuleNotFoundError" in r.stderr


def test_pack_plot_writes_the_artifact_and_report_then_notes_the_skipped_plot(tmp_path):
    ckpt = tmp_path / "model.pt"
    torch.save(reference_like_state_dict(seed=3, dim=64, layers=2, vocab=128), ckpt)
    out, report, plot = tmp_path / "a.pgc", tmp_path / "alloc.json", tmp_path / "alloc.png"
    r = pgc_without_matplotlib("pack", ckpt, "-o", out, "--calib-selfgen", "2", "--calib-seq-len", "32",
                               "--report", report, "--plot", plot)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[-1] == NOTE and r.stderr.count("pgc: note:") == 1
    assert f"wrote {out} ({out.stat().st_size:,} bytes, method solver)" in r.stdout
    assert json.loads(report.read_text())["model_bytes"] == out.stat().st_size
    assert not plot.exists()


def test_sweep_writes_its_tables_then_notes_the_skipped_plot(files, tmp_path):  # noqa: F811
    out_dir = tmp_path / "sweep"
    r = pgc_without_matplotlib("sweep", files / "tiny.pt", "--budgets", "70000", "--uniform", "int8-ref",
                               "--out-dir", out_dir, "--calib-selfgen", "2", "--calib-seq-len", "16",
                               *eval_args(files), "--max-tokens", "256")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[-1] == NOTE and r.stderr.count("pgc: note:") == 1
    rows = json.loads((out_dir / "sweep.json").read_text())["rows"]
    assert [(row["kind"], row["label"]) for row in rows] == [("solver", "70000"), ("uniform", "int8-ref")]
    assert all((out_dir / f).is_file() for f in ("budget_70000.pgc", "uniform_int8-ref.pgc", "sweep.md"))
    assert not (out_dir / "sweep.png").exists()
    assert r.stdout.splitlines()[-1] == f"wrote {out_dir / 'sweep.md'}, {out_dir / 'sweep.json'}"
