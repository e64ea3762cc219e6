"""``build_decoder``: one self-contained Python module that decodes a given artifact.

The module is assembled from the library's own decode functions (runtime.decode, which is
format.decode_artifact, the container walk ``unpack`` runs; the codecs' and the methods'
``decode_fn``): each function's source is copied with ``inspect.getsource``, and so is every
module-level function or constant it reaches, found by walking the names its code uses. Imports
(numpy, torch, brotli, stdlib) are re-emitted and ``FormatError``/``CodecError`` become one local
exception class, so the result needs no pgcompress. The codec and method tables come from the
registry (one table for the library and the decoder); only the entries the artifact uses are
included; the text is minified (python-minifier).
"""

from __future__ import annotations

import ast
import builtins
import functools
import inspect
import textwrap
import types

from pgcompress import format as fmt
from pgcompress.errors import PgcError
from pgcompress.registry import get_codec, get_method
from pgcompress.submission import runtime

ALLOWED_MODULES = {"numpy", "torch", "brotli", "zlib", "lzma", "struct", "json", "math"}
_LOCAL_ERRORS = ("FormatError", "CodecError")
_PRELUDE = "class FormatError(ValueError):\n    pass\n\n\nCodecError = FormatError\n"


def build_decoder(data: bytes, minify: bool = True, source: str = "artifact") -> str:
    """artifact bytes -> source of a module defining ``decode(data) -> dict[str, torch.Tensor]``."""
    container = fmt.parse(data, source)
    codecs = sorted({s.codec for t in container.tensors for s in t.streams})
    return build_decoder_for(codecs, stored_methods(container), minify)


def stored_methods(container: fmt.Container) -> list[str]:
    """Every method the artifact's tensors decode through: their own and those they nest
    (``Method.inner_methods``, e.g. a bank stored slice by slice). Unknown names are kept (the
    caller reports them)."""
    out = set()
    for t in container.tensors:
        out.add(t.method)
        try:
            out.update(get_method(t.method).inner_methods(t.params))
        except PgcError:
            pass
    return sorted(out)


def build_decoder_for(codecs: list[str], methods: list[str], minify: bool = True) -> str:
    """The decoder module for artifacts using only these codec and method names (registry names)."""
    codec_fns = {c: get_codec(c).decode_fn for c in codecs}
    method_fns = {m: get_method(m).decode_fn for m in methods}
    missing = [n for table in (codec_fns, method_fns) for n, fn in table.items() if fn is None]
    if missing:
        raise PgcError(f"the artifact uses {', '.join(missing)}, which a submission cannot decode; "
                       "pack it with --submittable")
    src = assemble({"CODECS": codec_fns, "METHODS": method_fns}, runtime.decode)
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
            # co_names also holds attribute names (``type(e).__name__``): dunders are never globals here
            if name in tables or name in _LOCAL_ERRORS or name.startswith("__") or name not in f.__globals__:
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


@functools.lru_cache(maxsize=16)
def _minify(src: str) -> str:
    """Memoised: the budget solver counts the decoder of every artifact it writes, and most rounds
    use the same methods and codecs (the same source), which python-minifier takes ~0.8 s over."""
    import python_minifier

    return python_minifier.minify(src, remove_literal_statements=True, rename_globals=False)
