"""Progress on stderr: tqdm bars for a person at a terminal; in logs and pipes, stamped lines.

Where stderr is not a terminal (CI logs, ``2> log``, an autoresearch loop), a stage writes one line
when it starts and one when it ends, and a long one a line with its ETA at most every
``LOG_EVERY_S`` seconds in between, each stamped with the seconds since pgcompress was imported:

    [   3.1s] calibrate: 0/8
    [  33.1s] calibrate: 5/8, ETA 18s
    [  51.0s] calibrate: 8/8 done in 47.9s

A counter whose units cost more as it goes (self-generation, where a step re-runs a growing
context) passes ``work``: the cumulative cost of the first n units. Its ETA is then elapsed / work
done x work left, and a terminal bar fills by work while it shows the count.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")

LOG_EVERY_S = 30.0
_START = time.monotonic()


def stamp() -> str:
    return f"[{time.monotonic() - _START:7.1f}s]"


def note(message: str, enabled: bool = True) -> None:
    """One stamped status line on stderr (terminal or not)."""
    if enabled:
        print(f"{stamp()} {message}", file=sys.stderr, flush=True)


def progress_bar(items: Iterable[T], label: str, total: int | None = None, enabled: bool = True,
                 unit: str = "it") -> Iterator[T]:
    if not enabled:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with progress_counter(label, total, unit) as bar:
        for item in items:
            yield item
            bar.update(1)


def eta_seconds(elapsed: float, done: int, total: int, work: Callable[[int], float] | None = None) -> float | None:
    """Seconds left after ``done`` of ``total`` units took ``elapsed``: elapsed / work done x work
    left, where ``work(n)`` is the cost of the first n units (None: every unit costs the same).
    None before any work is done."""
    cost = work or float
    done_work = cost(done)
    if done_work <= 0:
        return None
    return elapsed * (cost(total) - done_work) / done_work


@contextlib.contextmanager
def progress_counter(label: str, total: int | None, unit: str = "it", enabled: bool = True,
                     work: Callable[[int], float] | None = None):
    """A bar advanced by hand (``bar.update(n)``, ``bar.set_postfix_str(s)``) for work that is not
    one loop over items, e.g. sampling ``total`` tokens a batch of sequences at a time.
    work: cumulative cost of the first n units, for an ETA where units cost unequal (needs total)."""
    if not enabled:
        yield _Silent()
        return
    if not sys.stderr.isatty():
        lines = _Lines(label, total, unit, work)
        yield lines
        lines.close()
        return
    from tqdm import tqdm

    if work is not None and total:
        with tqdm(desc=label, total=work(total), file=sys.stderr, leave=False, dynamic_ncols=True,
                  bar_format="{desc} |{bar}| {percentage:3.0f}% [{elapsed}<{remaining}{postfix}]") as bar:
            yield _WorkBar(bar, label, total, unit, work)
        return
    with tqdm(desc=label, total=total, unit=unit, unit_scale=True, file=sys.stderr, leave=False,
              dynamic_ncols=True) as bar:
        yield bar


@contextlib.contextmanager
def progress_stage(label: str, enabled: bool = True):
    """A stage with no count (e.g. the solver's rounds): a start and a done line outside a terminal,
    nothing at one."""
    if not enabled or sys.stderr.isatty():
        yield
        return
    t0 = time.monotonic()
    note(f"{label} ...")
    yield
    note(f"{label}: done in {time.monotonic() - t0:.1f}s")


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass


class _WorkBar:
    """A tqdm bar that fills (and times its ETA) by work, its label showing the count in units."""

    def __init__(self, bar, label: str, total: int, unit: str, work: Callable[[int], float]):
        self.bar, self.label, self.total, self.unit, self.work = bar, label, total, unit, work
        self.n = 0
        self._describe(refresh=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        self._describe(refresh=False)  # drawn by the update, at tqdm's own pace
        self.bar.update(self.work(self.n) - self.bar.n)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.bar.set_postfix_str(s, refresh)

    def _describe(self, refresh: bool) -> None:
        from tqdm import tqdm

        def size(n: int) -> str:
            return str(n) if n < 1000 else tqdm.format_sizeof(n)

        self.bar.set_description_str(f"{self.label}: {size(self.n)}/{size(self.total)} {self.unit}", refresh=refresh)


class _Lines:
    """tqdm's ``update``/``set_postfix_str`` as stamped lines: start, every LOG_EVERY_S, done."""

    def __init__(self, label: str, total: int | None, unit: str, work: Callable[[int], float] | None = None):
        self.label, self.total, self.unit, self.work = label, total, unit, work
        self.n, self.postfix = 0, ""
        self.t0 = self.last = time.monotonic()
        note(f"{label}: {self._count()}")

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last < LOG_EVERY_S or (self.total is not None and self.n >= self.total):
            return
        self.last = now
        left = None if self.total is None else eta_seconds(now - self.t0, self.n, self.total, self.work)
        eta = "" if left is None else f", ETA {left:.0f}s"
        note(f"{self.label}: {self._count()}{eta}{self._postfix()}")

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def close(self) -> None:
        note(f"{self.label}: {self._count()} done in {time.monotonic() - self.t0:.1f}s{self._postfix()}")

    def _count(self) -> str:
        unit = "" if self.unit == "it" else f" {self.unit}"
        return f"{self.n:,}{unit}" if self.total is None else f"{self.n:,}/{self.total:,}{unit}"

    def _postfix(self) -> str:
        return f" ({self.postfix})" if self.postfix else ""
