"""`pip install .` (not editable) into a fresh venv gives a working `pgc` and no stray top-level modules."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

from conftest import REPO


def test_pip_install_into_fresh_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    # Dependencies (torch etc.) come from this interpreter's site-packages through a .pth file, so the
    # test installs only pgcompress itself and downloads no multi-GB wheels. sys.path's site folders
    # too: an environment may itself reach its dependencies through a .pth line.
    sites = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")]
    deps = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]] + sites if Path(p).is_dir()]
    (purelib / "zz_test_deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(REPO)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]

    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    r = subprocess.run([str(venv / "bin" / "pgc"), "--help"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    for command in ("pack", "inspect", "unpack", "methods"):
        assert command in r.stdout
    r = subprocess.run([str(py), "-c", "import pgcompress, pgcompress.cli, pgcompress.kernels; "
                        "print(pgcompress.__file__); print(pgcompress.cli.__file__)"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, check=True)
    assert all(line.startswith(str(purelib)) for line in r.stdout.split()), r.stdout
    assert not (purelib / "cli").exists() and not (purelib / "kernels").exists()
