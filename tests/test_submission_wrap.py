"""``pgc wrap``: the wrapped script compiles, runs the same code, and is much smaller."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import argparse
import typing

import pytest

from pgcompress.errors import PgcError
from pgcompress.submission.wrap import is_wrapped, unwrap, wrap_source

SMALL_SCRIPT = textwrap.dedent('''
    """A small script with docstrings, locals, a class and __main__ guard."""
    import math, sys

    class Acc:
        """Accumulates squares."""
        def __init__(self):
            self.total = 0.0
        def add(self, value):
            squared = value * value
            self.total += squared
            return self

    def main(argv):
        acc = Acc()
        for item in range(int(argv[0]) if argv else 10):
            acc.add(math.sqrt(item))
        print(f"total={acc.total:.6f} name={__name__} args={argv}")

    if __name__ == "__main__":
        main(sys.argv[1:])
''')


def run(path: Path, *args: str) -> str:
    res = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, check=True)
    return res.stdout


def test_wrapped_script_prints_what_the_original_prints(tmp_path):
    src = tmp_path / "orig.py"
    src.write_text(SMALL_SCRIPT)
    w = wrap_source(SMALL_SCRIPT, "orig.py")
    dst = tmp_path / "wrapped.py"
    dst.write_text(w.text)
    assert run(dst, "7") == run(src, "7")
    assert "total=21.000000 name=__main__ args=['7']" in run(dst, "7")
    assert is_wrapped(w.text) and not is_wrapped(SMALL_SCRIPT)
    compile(unwrap(w.text), "x", "exec")


def test_large_script_is_at_least_3x_smaller():
    # ~150 KB of real, varied Python (stdlib sources), comparable to a record's train_gpt.py
    source = "\n".join(Path(m.__file__).read_text() for m in (argparse, typing))
    assert len(source) > 120_000
    w = wrap_source(source, "big.py")
    assert w.counted_bytes * 3 <= w.raw_bytes
    assert w.counted_bytes == len(w.text.encode())
    assert w.minified_bytes < w.raw_bytes
    compile(w.text, "big.py", "exec")


def test_a_script_that_does_not_compile_is_refused():
    with pytest.raises(PgcError, match="does not compile"):
        wrap_source("def broken(:\n", "bad.py")
