"""What a submission weighs: code file + artifact + the decoder it carries, counted as it will be
pasted (challenge rule: all counted code lives in train_gpt.py; reference-protocol section 9).

Modes:
- ``self-contained``: the generated decoder (``pgc decoder``) goes into train_gpt.py. Raw code:
  + the minified decoder and a newline; code wrapped by ``pgc wrap``: the size of wrapping the
  code's source with the decoder appended (measured, not estimated); a code file that already
  carries a pgcompress decoder able to read the artifact: nothing more (never counted twice);
- ``import``: train_gpt.py imports pgcompress (listed in its requirements.txt): code only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pgcompress.code_bytes import count_code_bytes
from pgcompress.errors import PgcError

MODES = ("self-contained", "import")
_TABLE = r"\b{name}\s*=\s*\{{([^{{}}]*)\}}"


@dataclass(frozen=True)
class Counted:
    code_bytes: int  # what the challenge counts as code (decoder included where it is pasted)
    decoder_bytes: int  # the decoder's share of code_bytes (0: import mode or already carried)
    code_form: str | None  # "raw", "wrapped" or None (no code file)
    note: str = ""


class Accounting:
    def __init__(self, code: str | bytes | Path | None = None, mode: str = "self-contained"):
        if mode not in MODES:
            raise PgcError(f"unknown submission mode {mode!r}; use one of {', '.join(MODES)}")
        self.mode = mode
        self.code_bytes = count_code_bytes(code)
        self.source = _source_text(code)
        self.form = None if self.source is None else ("wrapped" if _is_wrapped(self.source) else "raw")
        self.inner = self.source
        if self.form == "wrapped":
            from pgcompress.submission.wrap import unwrap

            self.inner = unwrap(self.source)
        self._cache: dict[tuple, Counted] = {}

    def count(self, artifact: bytes) -> Counted:
        if self.mode == "import":
            return Counted(self.code_bytes, 0, self.form)
        from pgcompress import format as fmt
        from pgcompress.submission.decoder import build_decoder, stored_methods

        c = fmt.parse(artifact)
        needs = (frozenset(s.codec for t in c.tensors for s in t.streams), frozenset(stored_methods(c)))
        if needs in self._cache:
            return self._cache[needs]
        decoder = build_decoder(artifact)
        if self.inner is not None and carried_decoder_covers(self.inner, *needs):
            counted = Counted(self.code_bytes, 0, self.form, "the code file already carries a decoder for this artifact")
        elif self.form == "wrapped":
            from pgcompress.submission.wrap import wrap_source

            total = wrap_source(self.inner + "\n" + decoder).counted_bytes
            counted = Counted(total, total - self.code_bytes, self.form)
        else:
            extra = len(decoder.encode("utf-8")) + 1
            counted = Counted(self.code_bytes + extra, extra, self.form)
        self._cache[needs] = counted
        return counted


def carried_decoder_covers(source: str, codecs: frozenset, methods: frozenset) -> bool:
    """Whether ``source`` holds a generated decoder (its CODECS/METHODS tables and ``decode``)
    whose tables name every codec and method the artifact uses."""
    if not re.search(r"\bdef decode\(", source):
        return False
    found = []
    for name in ("CODECS", "METHODS"):
        m = re.search(_TABLE.format(name=name), source)
        if m is None:
            return False
        found.append(set(re.findall(r"['\"]([^'\"]+)['\"]\s*:", m.group(1))))
    return codecs <= found[0] and methods <= found[1]


def _source_text(code) -> str | None:
    if code is None:
        return None
    if isinstance(code, bytes):
        return code.decode("utf-8")
    if isinstance(code, Path):
        return code.read_text(encoding="utf-8")
    return code


def _is_wrapped(text: str) -> bool:
    from pgcompress.submission.wrap import is_wrapped

    return is_wrapped(text)
