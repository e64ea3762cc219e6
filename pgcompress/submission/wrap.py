"""``wrap``: a script minified, compressed and put in a self-extracting base85 stub.

Records count their train_gpt.py this way (about 30 KB counted for 130-160 KB of source). The
stub execs the decompressed source in the stub's own globals, so ``__name__``, ``__file__`` and
command-line arguments are what the original script would see.
"""

from __future__ import annotations

import ast
import base64
import lzma
from dataclasses import dataclass

import brotli

from pgcompress.errors import PgcError

_STUBS = {
    "lzma": "import lzma as L,base64 as B\nexec(L.decompress(B.b85decode({payload!r})))\n",
    "brotli": "import brotli as L,base64 as B\nexec(L.decompress(B.b85decode({payload!r})))\n",
}


@dataclass(frozen=True)
class Wrapped:
    text: str  # the wrapped script
    compressor: str  # "lzma" or "brotli"
    raw_bytes: int  # the source as given
    minified_bytes: int

    @property
    def counted_bytes(self) -> int:
        return len(self.text.encode("utf-8"))


def minify(source: str) -> str:
    import python_minifier

    # Docstrings and other bare literal statements go; locals are renamed, module-level names
    # are kept so that anything importing or grepping the script still finds them.
    return python_minifier.minify(source, remove_literal_statements=True, rename_globals=False)


def wrap_source(source: str, name: str = "train_gpt.py") -> Wrapped:
    """Minify ``source``, compress it with lzma and brotli, and keep the smaller stub."""
    try:
        compile(source, name, "exec")
    except SyntaxError as exc:
        raise PgcError(f"{name}: does not compile ({exc.msg}, line {exc.lineno}); fix it before wrapping") from None
    small = minify(source)
    data = small.encode("utf-8")
    packed = {
        "lzma": lzma.compress(data, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME),
        "brotli": brotli.compress(data, quality=11, lgwin=24),
    }
    candidates = []
    for comp in ("lzma", "brotli"):  # fixed order: ties go to lzma
        payload = base64.b85encode(packed[comp]).decode("ascii")
        candidates.append((len(_STUBS[comp].format(payload=payload)), comp, payload))
    _, comp, payload = min(candidates, key=lambda c: c[0])
    text = _STUBS[comp].format(payload=payload)
    check_wrapped(text, small, name)
    return Wrapped(text, comp, len(source.encode("utf-8")), len(data))


def unwrap(text: str) -> str:
    """The minified source inside a wrapped script (the inverse of the stub)."""
    for comp, mod in (("lzma", lzma), ("brotli", brotli)):
        prefix = _STUBS[comp].split("{payload!r}")[0]
        if text.startswith(prefix):
            payload = text[len(prefix):].rsplit(")))", 1)[0]
            return mod.decompress(base64.b85decode(ast.literal_eval(payload))).decode("utf-8")
    raise PgcError("not a wrapped script (no pgc wrap stub found)")


def is_wrapped(text: str) -> bool:
    return any(text.startswith(stub.split("{payload!r}")[0]) for stub in _STUBS.values())


def check_wrapped(text: str, minified: str, name: str) -> None:
    """The stub compiles, unwraps to exactly the minified source, and that compiles too."""
    compile(text, name, "exec")
    if unwrap(text) != minified:
        raise PgcError(f"{name}: wrapped script does not unwrap to its source (a pgcompress bug)")
    compile(minified, name, "exec")
