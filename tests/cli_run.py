"""Running ``pgc`` in-process in tests: exit code, stdout, stderr."""

from __future__ import annotations

from pgcompress.cli.main import main


def run_main(capsys, *args) -> tuple[int, str, str]:
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err
