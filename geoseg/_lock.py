"""An operating-system lock on a set of outputs, naming the process that holds it.

Two geoseg processes writing the same outputs (a double-started cron job, a
user retrying in a second terminal) would remove each other's working store
and replace each other's files. Each takes an exclusive, non-blocking lock on
a hidden file beside its outputs first; the second is refused with the first
one's PID. The operating system releases the lock when its holder ends in any
way, SIGKILL included, so a stale lock file never blocks a later run.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from ._files import write_error
from .errors import LockedError

__all__ = ["hold"]


@contextlib.contextmanager
def hold(path: str | os.PathLike[str], busy: str, *, error: type[LockedError] = LockedError) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed, removed on release).

    Raises
    ------
    LockedError
        Another process holds it: `error` with the message ``f"{busy} (pid N)"``.
    GeosegIOError
        The lock file cannot be created.
    """
    path = Path(path)
    if sys.platform == "win32":  # no flock: filelock's msvcrt lock, without the holder's PID
        from filelock import FileLock, Timeout

        lock = FileLock(str(path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise error(busy) from None
        try:
            yield
        finally:
            lock.release()
        return
    fd = _acquire(path, busy, error)
    try:
        yield
    finally:
        # Unlink while still holding the lock: a process that opened the old file
        # finds it unlinked after taking the lock, and starts over (see _acquire).
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def _acquire(path: Path, busy: str, error: type[LockedError]) -> int:
    import fcntl

    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise write_error(path, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise error(f"{busy} (pid {pid})") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            except OSError as exc:
                os.close(fd)
                path.unlink(missing_ok=True)
                raise write_error(path, exc) from exc
            return fd
        os.close(fd)  # the holder removed this file as we opened it: lock the new one
