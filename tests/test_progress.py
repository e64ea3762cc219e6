"""Progress on stderr: tqdm bars at a terminal; off one, a stamped line per stage start and end,
and a line with an ETA at most every LOG_EVERY_S seconds in between."""

from __future__ import annotations

import io
import re
import sys

import pytest

import pgcompress.progress as prog
from cli_run import STAMPED


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    """time.monotonic for pgcompress.progress, advanced by hand."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log(monkeypatch, capsys):
    """(capsys, clock): stderr is pytest's capture (not a terminal), time is the clock's."""
    clock = _Clock()
    monkeypatch.setattr(prog.time, "monotonic", clock)
    monkeypatch.setattr(prog, "_START", clock.now)
    return capsys, clock


def lines(capsys) -> list[str]:
    out = capsys.readouterr().err.splitlines()
    assert all(STAMPED.match(line) for line in out), out
    return out


def test_a_loop_off_a_terminal_is_a_start_and_a_done_line(log):
    stream, clock = log
    seen = []
    for item in prog.progress_bar(["a", "b", "c"], "calibrate", enabled=True):
        clock.now += 2.5
        seen.append(item)
    assert seen == ["a", "b", "c"]
    assert lines(stream) == ["[    0.0s] calibrate: 0/3", "[    7.5s] calibrate: 3/3 done in 7.5s"]


def test_a_long_loop_logs_its_eta_at_most_every_interval(log, monkeypatch):
    stream, clock = log
    monkeypatch.setattr(prog, "LOG_EVERY_S", 30.0)
    with prog.progress_counter("train", 10, unit="steps") as bar:
        for step in range(10):
            clock.now += 12.0  # 12 s a step: a line after steps 3, 6 and 9 (36 s, 72 s, 108 s)
            bar.set_postfix_str(f"loss {9 - step}")
            bar.update(1)
    out = lines(stream)
    assert out[0] == "[    0.0s] train: 0/10 steps"
    # ETA = elapsed / done * left, from the stamps themselves
    assert out[1:4] == ["[   36.0s] train: 3/10 steps, ETA 84s (loss 7)",
                        "[   72.0s] train: 6/10 steps, ETA 48s (loss 4)",
                        "[  108.0s] train: 9/10 steps, ETA 12s (loss 1)"]
    assert out[4] == "[  120.0s] train: 10/10 steps done in 120.0s (loss 0)"
    assert len(out) == 5


def test_eta_without_work_is_elapsed_over_done_times_left():
    eta = prog.EtaFit(10)
    assert eta.left() is None
    eta.add(2, 6.0)
    eta.add(1, 4.0)
    assert eta.left() == 10.0 / 3 * 7


def test_eta_fit_learns_a_cost_per_unit_and_per_unit_of_work():
    eta = prog.EtaFit(10, work=lambda n: n * (n + 1) / 2)  # unit k needs k units of work
    for k in range(1, 5):
        eta.add(1, 0.5 + 0.25 * k)  # 0.5 s a unit + 0.25 s a unit of work
    assert eta.rates() == pytest.approx((0.5, 0.25))
    assert eta.left() == pytest.approx(0.5 * 6 + 0.25 * (55 - 10))  # units 5..10: 6 units, 45 work


def test_eta_fit_never_uses_a_negative_cost():
    eta = prog.EtaFit(4, work=lambda n: {0: 0.0, 1: 1.0, 2: 3.0, 4: 10.0}[n])  # times fall as work rises:
    eta.add(1, 2.0)  # a + b = 2
    eta.add(1, 1.0)  # a + 2b = 1: b = -1 is no cost
    a, b = eta.rates()
    assert (a, b) == (1.5, 0.0)  # per unit only: a smaller squared error than per work only
    assert eta.left() == 3.0


def test_a_counter_with_growing_unit_costs_logs_an_honest_eta(log, monkeypatch):
    stream, clock = log
    monkeypatch.setattr(prog, "LOG_EVERY_S", 0.0)
    with prog.progress_counter("self-generate", 10, unit="tok", work=lambda n: n * n) as bar:
        for k in range(1, 11):
            clock.now += 2 * k - 1  # unit k costs its work, k^2 - (k-1)^2 seconds: 100 s in all
            bar.update(1)
    out = lines(stream)
    # from the second unit on the fit has the cost per unit of work: k^2 s passed, 100 - k^2 left
    assert out[2] == "[    4.0s] self-generate: 2/10 tok, ETA 96s"  # a constant rate would say 16s
    assert out[5] == "[   25.0s] self-generate: 5/10 tok, ETA 75s"
    assert out[-1] == "[  100.0s] self-generate: 10/10 tok done in 100.0s"


def test_a_terminal_bar_with_work_shows_the_fitted_eta(monkeypatch):
    err = _Tty()
    monkeypatch.setattr(sys, "stderr", err)
    with prog.progress_counter("self-generate", 10, unit="tok", work=lambda n: n * n) as bar:
        bar.update(5)
        assert bar.bar.n == 5 and bar.bar.total == 10 and bar.eta.n == 5
        bar.set_postfix_str("x")
    assert "self-generate" in err.getvalue() and "ETA" in err.getvalue()


def test_a_failed_stage_logs_no_done_line(log):
    stream, _ = log
    with pytest.raises(ValueError):
        for _ in prog.progress_bar(range(4), "eval", enabled=True):
            raise ValueError("boom")
    assert lines(stream) == ["[    0.0s] eval: 0/4"]


def test_an_uncounted_stage_is_a_start_and_a_done_line(log):
    stream, clock = log
    with prog.progress_stage("solve at 1,000 B"):
        clock.now += 4.0
    assert lines(stream) == ["[    0.0s] solve at 1,000 B ...", "[    4.0s] solve at 1,000 B: done in 4.0s"]


def test_disabled_is_silent_everywhere(monkeypatch):
    for stream in (io.StringIO(), _Tty()):
        monkeypatch.setattr(sys, "stderr", stream)
        assert list(prog.progress_bar(range(3), "x", enabled=False)) == [0, 1, 2]
        with prog.progress_counter("y", 3, enabled=False) as bar:
            bar.update(3)
        with prog.progress_stage("z", enabled=False):
            pass
        assert stream.getvalue() == ""


def test_a_terminal_gets_a_tqdm_bar_and_no_stamped_lines(monkeypatch):
    stream = _Tty()
    monkeypatch.setattr(sys, "stderr", stream)
    assert list(prog.progress_bar(range(3), "calibrate")) == [0, 1, 2]
    with prog.progress_stage("solve"):
        pass
    text = stream.getvalue()
    assert "calibrate" in text and "\r" in text  # tqdm redraws the line in place
    assert not re.search(r"\[ *\d+\.\ds\]", text) and "solve" not in text
