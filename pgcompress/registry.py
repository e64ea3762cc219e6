"""Name -> implementation registries for quantization methods and stream codecs.

The container stores only registered names and plain-data parameters; it never imports a
concrete method or codec. Methods register a name pattern (a regex) and a factory, so one
family serves ``int2-rtn`` .. ``int8-rtn``; codecs register one instance per name.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from pgcompress.errors import CodecError, MethodError

if TYPE_CHECKING:
    from pgcompress.coding.base import Codec
    from pgcompress.quant.base import Method


@dataclass(frozen=True)
class MethodFamily:
    """What ``pgc methods`` shows of a family: its names as people write them and one that works."""

    regex: re.Pattern
    factory: Callable[[re.Match], "Method"]
    summary: str
    readable: str  # e.g. "int<2-8>-rtn[<mods>]"
    example: str  # e.g. "int8-rtn"; always matches ``regex``


_METHOD_FAMILIES: list[MethodFamily] = []
_METHOD_CACHE: dict[str, "Method"] = {}
_CODECS: dict[str, "Codec"] = {}
_CANDIDATES: list[Callable] = []

_MODS = "([-+].*)?"  # the intN families' optional modifiers: -g64, -asym, +lqer-r8, ...
_RANGE = re.compile(r"\(\[(\w)-(\w)\]\)|\[(\w)-(\w)\]")  # ([2-8]) or [2-8]
_REGEX_CHARS = re.compile(r"[\\()\[\]{}.*+?|^$]")


def register_method(pattern: str, factory: Callable[[re.Match], "Method"], summary: str,
                    readable: str | None = None, example: str | None = None,
                    candidates: Callable | None = None) -> None:
    """Register a method family. ``pattern`` must match the whole name (e.g. ``int([2-8])-rtn``).

    ``candidates``: the family's ``fn(kind) -> [method names]`` for the budget solver (the same as a
    ``register_candidates(fn)`` call); without it the solver never offers the family.

    ``readable`` (the pattern as a person writes it) and ``example`` (a name it accepts) default to
    ones read off simple patterns: ``int([2-8])-rtn([-+].*)?`` -> ``int<2-8>-rtn[<mods>]``, ``int8-rtn``."""
    regex = re.compile(pattern)
    readable = readable or _readable(pattern)
    example = example or _example(pattern)
    if readable is None or example is None:
        raise ValueError(f"method pattern {pattern!r}: pass readable= and example=, they cannot be derived")
    if not regex.fullmatch(example):
        raise ValueError(f"method pattern {pattern!r} does not match its example {example!r}")
    _METHOD_FAMILIES.append(MethodFamily(regex, factory, summary, readable, example))
    if candidates is not None:
        register_candidates(candidates)


def _split_mods(pattern: str) -> tuple[str, bool]:
    return (pattern[:-len(_MODS)], True) if pattern.endswith(_MODS) else (pattern, False)


def _readable(pattern: str) -> str | None:
    body, mods = _split_mods(pattern)
    body = _RANGE.sub(lambda m: f"<{m.group(1) or m.group(3)}-{m.group(2) or m.group(4)}>", body)
    return None if _REGEX_CHARS.search(body) else body + ("[<mods>]" if mods else "")


def _example(pattern: str) -> str | None:
    body, _ = _split_mods(pattern)
    body = _RANGE.sub(lambda m: m.group(2) or m.group(4), body)  # the range's top: int8-rtn
    return None if _REGEX_CHARS.search(body) else body


def get_method(name: str) -> "Method":
    _load_builtins()
    if name not in _METHOD_CACHE:
        family = method_family(name)
        _METHOD_CACHE[name] = family.factory(family.regex.fullmatch(name))
    return _METHOD_CACHE[name]


def method_family(name: str) -> MethodFamily:
    """The registered family that serves method ``name``."""
    _load_builtins()
    for family in _METHOD_FAMILIES:
        if family.regex.fullmatch(name):
            return family
    raise MethodError(f"unknown method {name!r}; run 'pgc methods' to list the available ones")


def method_families() -> list[MethodFamily]:
    """Every registered family, in registration order."""
    _load_builtins()
    return list(_METHOD_FAMILIES)


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
    """Registered codec names: the built-ins in CODEC_ORDER (tie order for the codec choice), then
    any others in registration order."""
    _load_builtins()
    from pgcompress.coding.builtin import CODEC_ORDER

    return [n for n in CODEC_ORDER if n in _CODECS] + [n for n in _CODECS if n not in CODEC_ORDER]


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
