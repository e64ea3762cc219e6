"""Atomic file writes: readers see the old file or the whole new one, never a partial one.

The data goes into an unnamed file in the target's directory (Linux ``O_TMPFILE``), is fsynced,
then linked under a temporary name and renamed over the target. A process killed while writing
(even with SIGKILL) leaves no file behind, because the file has no name until the data is safe;
only the microseconds between link and rename could leave a ``.NAME.*.tmp``. Where
``O_TMPFILE`` is missing, a named temporary file is used and removed on any error.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from pgcompress.errors import PgcError

CHUNK = 1 << 20


def check_target(path: str | Path) -> Path:
    """The directory ``path`` will be written in; PgcError if it cannot be (call before slow work)."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise PgcError(f"{path}: directory {directory} does not exist; create it first")
    if path.is_dir():
        raise PgcError(f"{path}: is a directory; give a file name")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PgcError(f"{path}: directory {directory} is not writable")
    return directory


def atomic_write(path: str | Path, data: bytes) -> None:
    path = Path(path)
    directory = check_target(path)
    named = None
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o644)
    except (AttributeError, OSError):  # not Linux, or a filesystem without O_TMPFILE
        try:
            fd, named = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        except OSError as exc:
            raise PgcError(f"{path}: could not be created: {exc.strerror}") from None
    try:
        _write_all(fd, data)
        os.fsync(fd)
        if named is None:
            named = os.path.join(directory, f".{path.name}.{os.getpid()}.tmp")
            _link_unnamed(fd, named)
        os.chmod(named, 0o644)
        os.replace(named, path)
        named = None
        _fsync_dir(directory)
    except OSError as exc:
        full = " (disk full)" if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else ""
        raise PgcError(f"{path}: could not be written: {exc.strerror}{full}; "
                       "any previous file there is unchanged") from None
    finally:
        os.close(fd)
        if named is not None:
            Path(named).unlink(missing_ok=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data).cast("B")
    pos = 0
    while pos < len(view):
        pos += os.write(fd, view[pos:pos + CHUNK])


def _link_unnamed(fd: int, name: str) -> None:
    """Give an O_TMPFILE file a name: linkat(AT_SYMLINK_FOLLOW) on /proc/self/fd (no privilege
    needed; a dst_dir_fd makes Python call linkat rather than link, which would not follow)."""
    dfd = os.open(os.path.dirname(name) or ".", os.O_RDONLY)
    try:
        os.link(f"/proc/self/fd/{fd}", os.path.basename(name), dst_dir_fd=dfd, follow_symlinks=True)
    finally:
        os.close(dfd)


def _fsync_dir(directory: Path) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
