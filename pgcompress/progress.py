"""Progress on stderr: tqdm bars for a person at a terminal; in logs and pipes, stamped lines.

Where stderr is not a terminal (CI logs, ``2> log``, an autoresearch loop), a stage writes one line
when it starts and one when it ends, and a long one a line with its ETA at most every
``LOG_EVERY_S`` seconds in between, each stamped with the seconds since pgcompress was imported:

    [   3.1s] calibrate: 0/8
    [  33.1s] calibrate: 5/8, ETA 18s
    [  51.0s] calibrate: 8/8 done in 47.9s

A counter whose units cost more as it goes (self-generation, where a step re-runs a growing
context) passes ``work``: the work of the first n units (e.g. tokens run). Its ETA (``EtaFit``) is
then fitted on the run's own timings as a cost per unit plus a cost per unit of work, on a log
line and on a terminal bar alike.
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


class EtaFit:
    """Seconds left, fitted on the run itself: each update's time ~ alpha * units + beta * work
    (least squares over every update so far, alpha and beta >= 0), so a fixed cost per unit and a
    cost that grows with the work a unit needs (a longer context) are both learned from what the
    machine actually did, load included. ``work(n)`` is the work of the first n units; without it
    every unit is one unit of work and the ETA is elapsed / done x left."""

    def __init__(self, total: int, work: Callable[[int], float] | None = None):
        self.total, self.work, self.weighted = total, work or float, work is not None
        self.n, self.w, self.t = 0, 0.0, 0.0
        self.s = [0.0] * 6  # sums of uu, uw, ww, ut, wt, tt over updates (u units, w work, t seconds)

    def add(self, n: int, seconds: float) -> None:
        """n more units done, which took ``seconds``."""
        w = self.work(self.n + n) - self.w
        self.n, self.w, self.t = self.n + n, self.w + w, self.t + seconds
        for i, v in enumerate((n * n, n * w, w * w, n * seconds, w * seconds, seconds * seconds)):
            self.s[i] += v

    def rates(self) -> tuple[float, float]:
        """(alpha seconds a unit, beta seconds a unit of work): the best non-negative fit."""
        uu, uw, ww, ut, wt, tt = self.s
        fits = [(ut / uu, 0.0) if uu > 0 else (0.0, 0.0), (0.0, wt / ww) if ww > 0 else (0.0, 0.0)]
        det = uu * ww - uw * uw
        if det > 1e-9 * uu * ww:
            a, b = (ut * ww - wt * uw) / det, (wt * uu - ut * uw) / det
            if min(a, b) > -1e-12:  # rounding of an exact zero is no negative cost
                fits.append((max(a, 0.0), max(b, 0.0)))
        return min(fits, key=lambda f: tt - 2 * (f[0] * ut + f[1] * wt) + f[0] ** 2 * uu + 2 * f[0] * f[1] * uw
                   + f[1] ** 2 * ww)

    def left(self) -> float | None:
        if self.n == 0 or self.t <= 0:
            return None
        if not self.weighted:
            return self.t / self.n * (self.total - self.n)
        a, b = self.rates()
        return a * (self.total - self.n) + b * (self.work(self.total) - self.w)


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
        with tqdm(desc=label, total=total, unit=unit, unit_scale=True, file=sys.stderr, leave=False,
                  dynamic_ncols=True, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} {unit} [{elapsed}{postfix}]") as bar:
            yield _FittedBar(bar, EtaFit(total, work))
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


class _FittedBar:
    """A tqdm bar whose ETA is ``EtaFit``'s (tqdm's own assumes every unit costs the same)."""

    def __init__(self, bar, eta: EtaFit):
        self.bar, self.eta, self.postfix = bar, eta, ""
        self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        now = time.monotonic()
        self.eta.add(n, now - self.last)
        self.last = now
        self._show(refresh=False)
        self.bar.update(n)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s
        self._show(refresh)

    def _show(self, refresh: bool) -> None:
        from tqdm import tqdm

        left = self.eta.left()
        eta = "ETA ?" if left is None else f"ETA {tqdm.format_interval(left)}"
        self.bar.set_postfix_str(eta + (f", {self.postfix}" if self.postfix else ""), refresh)


class _Lines:
    """tqdm's ``update``/``set_postfix_str`` as stamped lines: start, every LOG_EVERY_S, done."""

    def __init__(self, label: str, total: int | None, unit: str, work: Callable[[int], float] | None = None):
        self.label, self.total, self.unit = label, total, unit
        self.eta = None if total is None else EtaFit(total, work)
        self.n, self.postfix = 0, ""
        self.t0 = self.last = self.tick = time.monotonic()
        note(f"{label}: {self._count()}")

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self.eta is not None:
            self.eta.add(n, now - self.tick)
        self.tick = now
        if now - self.last < LOG_EVERY_S or (self.total is not None and self.n >= self.total):
            return
        self.last = now
        left = None if self.eta is None else self.eta.left()
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
