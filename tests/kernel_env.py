"""Imported first by the kernel tests: Triton's interpreter runs the kernels on the CPU, which needs
TRITON_INTERPRET=1 before triton is imported. Without triton the importing test module is skipped,
unless PGC_REQUIRE_TRITON=1 (CI), where the import fails."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

try:
    import triton  # noqa: E402,F401
except ImportError:
    if os.environ.get("PGC_REQUIRE_TRITON") == "1":
        raise
    pytest.skip("triton is not installed", allow_module_level=True)
