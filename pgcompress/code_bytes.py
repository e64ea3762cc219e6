"""Counting a submission's code bytes the way the challenge does.

The reference script logs ``len(code.encode("utf-8"))`` with ``code`` read by
``Path(__file__).read_text(encoding="utf-8")``: text mode, so CRLF line ends count as one byte.
"""

from __future__ import annotations

from pathlib import Path

from pgcompress.errors import PgcError


def count_code_bytes(code: str | bytes | Path | None) -> int:
    """Bytes the challenge counts for ``code``: a path, the source text, raw bytes, or None (0)."""
    if code is None:
        return 0
    if isinstance(code, bytes):
        return len(code.decode("utf-8", errors="strict").replace("\r\n", "\n").replace("\r", "\n").encode("utf-8"))
    if isinstance(code, Path):
        if not code.is_file():
            raise PgcError(f"{code}: code file not found (--code counts its bytes toward the budget)")
        try:
            text = code.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise PgcError(f"{code}: code file is not UTF-8 text ({exc.reason})") from None
        return len(text.encode("utf-8"))
    return len(code.encode("utf-8"))
