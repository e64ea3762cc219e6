"""Progress bars on stderr, shown only to a person at a terminal (never in logs or pipes)."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress_bar(items: Iterable[T], label: str, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    if not _shown(enabled):
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=label, total=total, file=sys.stderr, leave=False, dynamic_ncols=True)


class _Silent:
    def update(self, n: int = 1) -> None:
        pass


@contextlib.contextmanager
def progress_counter(label: str, total: int, unit: str = "it", enabled: bool = True):
    """A bar advanced by hand (``bar.update(n)``) for work that is not one loop over items, e.g.
    sampling ``total`` tokens a batch of sequences at a time."""
    if not _shown(enabled):
        yield _Silent()
        return
    from tqdm import tqdm

    with tqdm(desc=label, total=total, unit=unit, unit_scale=True, file=sys.stderr, leave=False,
              dynamic_ncols=True) as bar:
        yield bar


def _shown(enabled: bool) -> bool:
    return enabled and sys.stderr.isatty()
