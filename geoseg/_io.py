"""Turn the many ways a write can fail into one :class:`~geoseg.errors.GeosegIOError` line.

A full disk surfaces as ``OSError: [Errno 28]`` from the zarr store, as
pyogrio's ``FeatureError``/``DataSourceError`` from the GeoPackage, as
``sqlite3.OperationalError: database or disk is full`` from the style table,
and as rasterio errors from GDAL. :func:`writing` wraps each writer so that
the user reads which file could not be written, why, and how much space is
free there, with no traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from .errors import GeosegError, GeosegIOError

__all__ = ["DISK_FULL", "free_bytes", "human_bytes", "write_error", "writing"]

#: Said of a write that failed for want of space (matched by tests and by :func:`is_disk_full`).
DISK_FULL = "no space left on device"

_FULL_MARKERS = ("no space left", "disk is full", "disk full", "not enough space", "errno 28")


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Free bytes on the file system holding `path` (or its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def human_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 kB'`` (decimal units, as ``df -H`` prints).

    Examples
    --------
    >>> human_bytes(1_250_000)
    '1.2 MB'
    """
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(m in str(exc).lower() for m in _FULL_MARKERS)


def write_error(path: str | os.PathLike[str], exc: BaseException) -> GeosegIOError:
    """One line for a failed write of `path`, with the free space there when the disk is full."""
    if is_disk_full(exc):
        free = free_bytes(path)
        where = f"; {human_bytes(free)} free there" if free is not None else ""
        err = GeosegIOError(f"cannot write {path}: {DISK_FULL}{where}")
        err.errno = errno.ENOSPC
        return err
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip().splitlines()[0][:200]
    return GeosegIOError(f"cannot write {path}: {reason or type(exc).__name__}")


@contextlib.contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Re-raise write failures inside the block as :func:`write_error` for `path`.

    geoseg's own errors pass unchanged; so does anything that is not an I/O
    failure (a bug stays a traceback rather than a misleading message).
    """
    try:
        yield
    except GeosegError:
        raise
    except (OSError, sqlite3.Error) as exc:
        raise write_error(path, exc) from exc
    except RuntimeError as exc:  # pyogrio's DataSourceError / FeatureError derive from RuntimeError
        if type(exc).__module__.startswith(("pyogrio", "rasterio")) or is_disk_full(exc):
            raise write_error(path, exc) from exc
        raise
