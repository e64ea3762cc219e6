"""``atomic_write`` under SIGKILL: a writer killed mid-write leaves the previous file intact and
no temporary file behind (a real child process, killed while its slowed-down write runs)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from pgcompress.atomic import atomic_write
from pgcompress.errors import PgcError

CHILD = textwrap.dedent("""
    import os, sys, time
    import pgcompress.atomic as atomic
    real = os.write
    def slow(fd, data):
        n = real(fd, data)
        print("writing", flush=True)
        time.sleep(0.05)
        return n
    os.write = slow
    atomic.atomic_write(sys.argv[1], b"N" * (64 << 20))
    print("done", flush=True)
""")


def test_sigkill_mid_write_keeps_previous_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "artifact.bin"
    target.write_bytes(b"previous artifact")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(3):  # a few chunks in: the write is well under way
            assert child.stdout.readline().strip() == "writing"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
    assert child.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"previous artifact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact.bin"]


def test_completed_write_replaces_the_file(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    atomic_write(target, b"new" * 1000)
    assert target.read_bytes() == b"new" * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]
    assert (target.stat().st_mode & 0o777) == 0o644


def test_refuses_a_directory_target(tmp_path):
    with pytest.raises(PgcError, match="is a directory"):
        atomic_write(tmp_path, b"x")
