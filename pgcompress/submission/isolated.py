"""Run a generated decoder as a submission would: in a child process that cannot import pgcompress.

The child blocks pgcompress, zstandard and python-minifier (a submission has only torch, numpy,
brotli and the standard library), decodes the artifact ``repeats`` times, and hands back the
state dict (a weights-only torch file) and the best decode time.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import torch

_CHILD = textwrap.dedent('''
    import sys, time, importlib.abc
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("pgcompress", "zstandard", "python_minifier", "cli"):
                raise ImportError("blocked: " + name)
    sys.meta_path.insert(0, Block())
    sys.path = [p for p in sys.path if p not in ("", ".")]
    import torch
    torch.set_num_threads(int(sys.argv[5]))
    ns = {}
    exec(compile(open(sys.argv[1]).read(), "decode_artifact.py", "exec"), ns)
    data = open(sys.argv[2], "rb").read()
    times = []
    for _ in range(int(sys.argv[4])):
        t0 = time.perf_counter(); out = ns["decode"](data); times.append(time.perf_counter() - t0)
    torch.save(out, sys.argv[3])
    print(min(times))
''')


def run_isolated(decoder_src: str, data: bytes, repeats: int = 1, threads: int = 1,
                 python: str | None = None) -> tuple[dict, float]:
    """-> (decoded state dict, best decode seconds). Raises CalledProcessError if the child fails.

    python: the interpreter to run (default: this one), e.g. a venv with other brotli/numpy versions."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "child.py").write_text(_CHILD)
        (tmp / "decode_artifact.py").write_text(decoder_src)
        (tmp / "artifact.bin").write_bytes(data)
        r = subprocess.run([python or sys.executable, str(tmp / "child.py"), str(tmp / "decode_artifact.py"),
                            str(tmp / "artifact.bin"), str(tmp / "out.pt"), str(repeats), str(threads)],
                           capture_output=True, text=True, check=True, cwd=tmp)
        return torch.load(tmp / "out.pt", weights_only=True), float(r.stdout.strip().splitlines()[-1])
