"""A text corpus from the standard library's own docstrings.

Sources are parsed with ``ast`` (never imported, so nothing runs), in sorted order, which makes
the corpus a pure function of the Python installation.
"""

from __future__ import annotations

import ast
import random
import sysconfig
from pathlib import Path

SKIP_DIRS = {"test", "tests", "site-packages", "dist-packages", "idlelib", "lib2to3", "__pycache__", "turtledemo"}
DOC_CHARS = 8_000  # the shared data's documents are up to ~8,000 characters too


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def module_text(source: str) -> str:
    """All docstrings of one module (module, classes, functions), blank-line separated."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return ""
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc and len(doc) > 40:  # one-liners like "Return x." add little but repetition
                docs.append(doc.strip())
    return "\n\n".join(docs)


def split_document(text: str, limit: int = DOC_CHARS) -> list[str]:
    """Cut at paragraph boundaries into pieces of at most ``limit`` characters (longer paragraphs cut hard)."""
    out, cur = [], ""
    for para in text.split("\n\n"):
        for piece in [para[i : i + limit] for i in range(0, len(para), limit)]:
            if cur and len(cur) + 2 + len(piece) > limit:
                out.append(cur)
                cur = piece
            else:
                cur = f"{cur}\n\n{piece}" if cur else piece
    if cur:
        out.append(cur)
    return out


def build_documents(root: Path | None = None, seed: int = 1337) -> list[str]:
    """Documents of the corpus, shuffled with ``seed``."""
    root = root or stdlib_root()
    files = sorted(p for p in root.rglob("*.py") if not SKIP_DIRS & set(p.relative_to(root).parts))
    docs = []
    for path in files:
        try:
            text = module_text(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        docs.extend(split_document(text))
    random.Random(seed).shuffle(docs)
    return docs


def train_val_split(docs: list[str], val_fraction: float = 0.1) -> tuple[list[str], list[str]]:
    """(train, val): validation = the first documents, as the challenge's export does."""
    n_val = max(1, int(len(docs) * val_fraction))
    return docs[n_val:], docs[:n_val]
