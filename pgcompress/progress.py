"""Progress bars on stderr, shown only to a person at a terminal (never in logs or pipes)."""

from __future__ import annotations

import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress_bar(items: Iterable[T], label: str, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    if not enabled or not sys.stderr.isatty():
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=label, total=total, file=sys.stderr, leave=False, dynamic_ncols=True)
