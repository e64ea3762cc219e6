"""Name -> implementation registries for quantization methods and stream codecs.

The container stores only registered names and plain-data parameters; it never imports a
concrete method or codec. Methods register a name pattern (a regex) and a factory, so one
family serves ``int2-rtn`` .. ``int8-rtn``; codecs register one instance per name.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable

from pgcompress.errors import CodecError, MethodError

if TYPE_CHECKING:
    from pgcompress.coding.base import Codec
    from pgcompress.quant.base import Method

_METHOD_FAMILIES: list[tuple[re.Pattern, Callable[[re.Match], "Method"], str]] = []
_METHOD_CACHE: dict[str, "Method"] = {}
_CODECS: dict[str, "Codec"] = {}


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


def _load_builtins() -> None:
    """Import the built-in methods and codecs once; they register themselves on import."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import pgcompress.coding.builtin  # noqa: F401
    import pgcompress.quant.builtin  # noqa: F401
