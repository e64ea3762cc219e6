"""Name -> implementation registries for quantization methods and stream codecs.

The container stores only registered names and plain-data parameters; it never imports a
concrete method or codec. Methods register a name pattern (a regex) and a factory, so one
family serves ``int2-rtn`` .. ``int8-rtn``; codecs register one instance per name.
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Callable

from pgcompress.errors import CodecError, MethodError

if TYPE_CHECKING:
    from pgcompress.coding.base import Codec
    from pgcompress.quant.base import Method

_METHOD_FAMILIES: list[tuple[re.Pattern, Callable[[re.Match], "Method"], str]] = []
_METHOD_CACHE: dict[str, "Method"] = {}
_CODECS: dict[str, "Codec"] = {}
_CANDIDATES: list[Callable] = []


def register_method(pattern: str, factory: Callable[[re.Match], "Method"], summary: str) -> None:
    """Register a method family. ``pattern`` must match the whole name (e.g. ``int(\\d)-rtn``)."""
    _METHOD_FAMILIES.append((re.compile(pattern), factory, summary))


def get_method(name: str) -> "Method":
    _load_builtins()
    if name in _METHOD_CACHE:
        return _METHOD_CACHE[name]
    for regex, factory, _ in _METHOD_FAMILIES:
        match = regex.fullmatch(name)
        if match:
            method = factory(match)
            _METHOD_CACHE[name] = method
            return method
    raise MethodError(f"unknown method {name!r}; run 'pgc methods' to list the available ones")


def method_families() -> list[tuple[str, str]]:
    """(pattern, one-line summary) for every registered family, in registration order."""
    _load_builtins()
    return [(regex.pattern, summary) for regex, _, summary in _METHOD_FAMILIES]


def register_candidates(fn: Callable) -> None:
    """Register ``fn(kind: TensorKind) -> list[str]``: the method names a family offers the budget
    solver for a tensor of that kind (a new method joins the solver by registering here)."""
    _CANDIDATES.append(fn)


def candidate_methods(kind) -> list[str]:
    """Every registered family's candidates for ``kind``, in registration order, without repeats."""
    _load_builtins()
    out: list[str] = []
    for fn in _CANDIDATES:
        for name in fn(kind):
            if name not in out:
                out.append(name)
    return out


def register_codec(codec: "Codec") -> None:
    if codec.name in _CODECS:
        raise ValueError(f"codec {codec.name!r} registered twice")
    _CODECS[codec.name] = codec


def get_codec(name: str) -> "Codec":
    _load_builtins()
    try:
        return _CODECS[name]
    except KeyError:
        raise CodecError(
            f"unknown codec {name!r}; available: {', '.join(sorted(_CODECS))}"
        ) from None


def codec_names() -> list[str]:
    _load_builtins()
    return list(_CODECS)


_LOADED = False
_LOADING = False
_LOAD_LOCK = threading.RLock()


def _load_builtins() -> None:
    """Import the built-in methods and codecs once; they register themselves on import. Locked, and
    marked done only after the imports, so a thread never sees a half-filled registry (the import
    itself may re-enter through the same thread, which the re-entrant lock allows)."""
    global _LOADED, _LOADING
    if _LOADED:
        return
    with _LOAD_LOCK:
        if _LOADED or _LOADING:
            return
        _LOADING = True
        try:
            import pgcompress.coding.builtin  # noqa: F401
            import pgcompress.quant.builtin  # noqa: F401
            _LOADED = True
        finally:
            _LOADING = False
