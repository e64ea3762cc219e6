"""Run a submission's train_gpt.py as a reviewer would: in a process where pgcompress cannot be imported.

    EVAL_ONLY=1 ARTIFACT=submission/final_model.pgc python check_isolated.py submission/train_gpt.py

Imports of pgcompress (and of zstandard and python-minifier, which a submission does not have) raise
ImportError, the current directory is dropped from sys.path, and the script runs as ``__main__``
with its own arguments. If its decode path still needed pgcompress, this run fails.
"""

from __future__ import annotations

import importlib.abc
import runpy
import sys

BLOCKED = ("pgcompress", "cli", "zstandard", "python_minifier")


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked: {name} (a self-contained submission must not need it)")
        return None


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for name in list(sys.modules):
        if name.split(".")[0] in BLOCKED:
            del sys.modules[name]
    sys.meta_path.insert(0, Block())
    sys.path = [p for p in sys.path if p not in ("", ".")]
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
