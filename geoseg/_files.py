"""Writing files: atomically (complete, or not at all), with one-line errors, and hashing them.

Every file geoseg writes goes through :func:`staged`: it is written under a
hidden temporary name in its final folder and renamed into place only when
complete, so an output path holds either the previous file, nothing, or the
complete new file. :func:`sha256_file` is the one file hash.

Write failures become one :class:`~geoseg.errors.GeosegIOError` line.

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
import glob
import hashlib
import json
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import GeosegError, GeosegIOError

__all__ = [
    "DISK_FULL",
    "check_outdir",
    "free_bytes",
    "human_bytes",
    "remove_stale_parts",
    "sha256_file",
    "staged",
    "write_error",
    "write_json",
    "write_text",
    "writing",
]

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


#: Below this much free space, a write that failed without saying why is taken to have run out of it.
NEARLY_FULL = 16 << 20

_RESUME = "free some space and run the same command again (finished blocks are kept)"


def write_error(path: str | os.PathLike[str], exc: BaseException) -> GeosegIOError:
    """One line for a failed write of `path`; when the disk is full, with the free space there.

    SQLite and GDAL often report a full disk as "Failed to commit
    transaction" or a failed INSERT; such a failure with less than
    :data:`NEARLY_FULL` free is reported as probably a full disk.
    """
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip().splitlines()[0][:160]
    reason = reason or type(exc).__name__
    free = free_bytes(path)
    where = f"{human_bytes(free)} free there" if free is not None else "free space unknown"
    if is_disk_full(exc):
        message = f"cannot write {path}: {DISK_FULL} ({where}); {_RESUME}"
    elif free is not None and free < NEARLY_FULL:
        message = f"cannot write {path}: {reason}, probably {DISK_FULL} ({where}); {_RESUME}"
    else:
        return GeosegIOError(f"cannot write {path}: {reason}")
    err = GeosegIOError(message)
    err.errno = errno.ENOSPC
    return err


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
    except Exception as exc:  # pyogrio's DataSourceError/FeatureError, rasterio's CPLE_* errors from GDAL
        if type(exc).__module__.startswith(("pyogrio", "rasterio")) or is_disk_full(exc):
            raise write_error(path, exc) from exc
        raise


@contextmanager
def staged(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it to `path` if the block succeeds.

    On any exception the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.part-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        _cleanup(tmp)
        if isinstance(exc, GeosegIOError):
            raise
        raise write_error(path, exc) from exc
    except BaseException:
        _cleanup(tmp)
        raise


def check_outdir(outdir: Path) -> None:
    """Create `outdir` if needed and check that files can be written into it (a one-line error if not)."""
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        probe = outdir / f".geoseg-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise GeosegIOError(
            f"cannot write to output folder {outdir} ({exc.strerror or exc}); pass -o with a writable folder"
        ) from exc


def remove_stale_parts(path: str | os.PathLike[str]) -> None:
    """Remove the temporary files of `path` that a killed process left behind (see :func:`staged`)."""
    path = Path(path)
    for p in path.parent.glob(f".{glob.escape(path.stem)}.part-*{glob.escape(path.suffix)}*"):
        p.unlink(missing_ok=True)


def _cleanup(tmp: Path) -> None:
    for p in (tmp, Path(f"{tmp}.aux.xml"), Path(f"{tmp}.ovr")):
        p.unlink(missing_ok=True)


def write_json(data: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write `data` as indented JSON, atomically."""
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` to `path` atomically (complete, or not at all)."""
    with staged(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())  # a full disk fails here, not after the rename
    return Path(path)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a whole file, read through one small reused buffer.

    ``hashlib.file_digest`` reads into a 256 KiB buffer: hashing the scene and
    the model at the same time (``prepare`` does) holds no large chunks.
    """
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
