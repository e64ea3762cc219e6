"""Running ``pgc`` in-process in tests: exit code, stdout, stderr; and reading a failure's stderr."""

from __future__ import annotations

import re
import tempfile

from pgcompress.cli.main import main

# Where a child process that imports pgcompress.cli (``python -m pgcompress.cli``, ``python -c``)
# runs unless a test names a folder: an empty one. Python puts the working directory first on such
# a child's sys.path, and in the repository root the checkout's pgcompress/ (which has no cli/ or
# kernels/ inside: an install maps them there) would shadow the installed package.
_CHILD_CWD = tempfile.TemporaryDirectory(prefix="pgc-test-cwd-")
CHILD_CWD = _CHILD_CWD.name

# A progress line, as pgcompress.progress writes them where stderr is not a terminal.
STAMPED = re.compile(r"\[ *\d+\.\ds\] \S")


def run_main(capsys, *args) -> tuple[int, str, str]:
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def error_line(err: str) -> str:
    """The one error line of a failed command's stderr: its last line, ``pgc: error: ...``; every
    line before it is a stamped progress line (logged where stderr is not a terminal)."""
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("pgc: error: "), err
    assert all(STAMPED.match(line) for line in lines[:-1]), err
    return lines[-1]
