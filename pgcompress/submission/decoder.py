"""``build_decoder``: one self-contained Python module that decodes a given artifact.

The module is assembled from the library's own decode functions (runtime.decode, the codecs'
*_decode functions and the methods' dequantize functions): each function's source is copied
with ``inspect.getsource``, and so is every module-level function or constant it reaches,
found by walking the names its code uses. Imports (numpy, torch, brotli, stdlib) are re-emitted
and ``CodecError`` becomes a local exception class, so the result needs no pgcompress. Only the
codecs and methods the artifact uses are included; the text is minified (python-minifier).
"""

from __future__ import annotations

import ast
import builtins
import inspect
import textwrap
import types

from pgcompress import format as fmt
from pgcompress.errors import PgcError
from pgcompress.registry import get_method
from pgcompress.submission import runtime

ALLOWED_MODULES = {"numpy", "torch", "brotli", "zlib", "lzma", "struct", "json", "math"}
_PRELUDE = "class CodecError(ValueError):\n    pass\n"


def build_decoder(data: bytes, minify: bool = True) -> str:
    """artifact bytes -> source of a module defining ``decode(data) -> dict[str, torch.Tensor]``."""
    container = fmt.parse(data)
    codecs = sorted({s.codec for t in container.tensors for s in t.streams})
    methods = sorted({t.method for t in container.tensors})
    method_fns = {m: get_method(m).decode_fn for m in methods}
    missing = [c for c in codecs if c not in runtime.CODECS] + [m for m, fn in method_fns.items() if fn is None]
    if missing:
        raise PgcError(f"the artifact uses {', '.join(missing)}, which a submission cannot decode; "
                       "pack it with --submittable")
    src = assemble({"CODECS": {c: runtime.CODECS[c] for c in codecs}, "METHODS": method_fns}, runtime.decode)
    return _minify(src) if minify else src


def assemble(tables: dict[str, dict[str, types.FunctionType]], entry: types.FunctionType) -> str:
    """Source of ``entry`` plus everything it reaches; ``tables`` are emitted as name -> function dicts."""
    funcs: dict[str, types.FunctionType] = {}
    consts: dict[str, str] = {}
    imports: set[str] = set()
    stack = [entry] + [f for table in tables.values() for f in table.values()]
    while stack:
        f = stack.pop()
        if funcs.get(f.__name__) is f:
            continue
        if f.__name__ in funcs:
            raise PgcError(f"two decode functions are both named {f.__name__!r}; rename one")
        funcs[f.__name__] = f
        for name in sorted(_global_names(f.__code__)):
            if name in tables or name == "CodecError" or name not in f.__globals__:
                continue
            value = f.__globals__[name]
            if isinstance(value, types.ModuleType):
                imports.add(_import_line(value, name))
            elif isinstance(value, types.FunctionType):
                stack.append(value)
            elif _is_literal(value):
                consts[name] = repr(value)
            elif hasattr(builtins, name):
                continue
            else:
                raise PgcError(f"{f.__name__} uses {name!r} ({type(value).__name__}), which a decoder cannot carry")
    parts = sorted(imports) + ["", _PRELUDE]
    parts += [f"{k} = {v}" for k, v in sorted(consts.items())]
    parts += [textwrap.dedent(inspect.getsource(funcs[k])) for k in sorted(funcs)]
    for tname, table in tables.items():
        parts.append(f"{tname} = {{" + ", ".join(f"{k!r}: {f.__name__}" for k, f in sorted(table.items())) + "}")
    return "\n".join(parts) + "\n"


def _is_literal(value) -> bool:
    """Plain constants (numbers, strings, and dicts/tuples/lists of them) that repr() rebuilds."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, bytes, dict, tuple, list)):
        return False
    try:
        return ast.literal_eval(repr(value)) == value
    except (ValueError, SyntaxError):
        return False


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _global_names(c)
    return names


def _import_line(module: types.ModuleType, alias: str) -> str:
    root = module.__name__.split(".")[0]
    if root not in ALLOWED_MODULES:
        raise PgcError(f"a decode function imports {module.__name__}, which a submission cannot rely on")
    return f"import {module.__name__}" if alias == module.__name__ else f"import {module.__name__} as {alias}"


def _minify(src: str) -> str:
    import python_minifier

    return python_minifier.minify(src, remove_literal_statements=True, rename_globals=False)
