"""A lock on outputs in object storage: a small object beside them, created only where none is.

A lock file's ``flock`` (:mod:`geoseg._lock`) holds only on one machine; two
runs writing the same ``s3://`` outputs may run on two. The lock is the
object ``s3://bucket/prefix/.<stem>.lock``, a JSON record of its holder::

    {"host": "node-7", "pid": 4242, "heartbeat": 1767225600.0, "token": "…"}

The rule:

- **Taking it**: the object is created with ``If-None-Match: *``, which S3
  (and moto, MinIO, …) refuse with 412 where an object is already there: of
  two runs that try at once, exactly one gets it.
- **Holding it**: a daemon thread rewrites the record every
  :data:`HEARTBEAT_S` seconds with a fresh ``heartbeat`` time, each time
  with ``If-Match`` on the ETag it wrote last; a holder that finds the ETag
  changed has lost the lock (it was taken over) and logs an error.
- **Refusal**: a run that finds a live lock fails with
  :class:`~geoseg.errors.LockedError` (the command line exits 75), the same
  line as a local lock: ``… (pid N)``, with ``on HOST`` where the holder
  runs elsewhere.
- **Taking over**: a lock is stale, and taken over by overwriting it with
  ``If-Match`` on the ETag read (so of two runs taking it over, one wins),
  when its holder is on this host and its PID is not alive (a SIGKILLed run
  does not block its rerun), or when its heartbeat is older than
  :data:`STALE_S` seconds (a holder on a machine that died). A record that
  cannot be read is judged by the object's own modification time.
- **Releasing it**: the holder stops its heartbeat and deletes the object if
  its ETag is still the one it wrote.

Clocks of the hosts sharing a bucket are assumed to agree to well within
:data:`STALE_S` minus :data:`HEARTBEAT_S`. A server without conditional
writes (it answers "not implemented") gets a best-effort lock: read, then
write, with a warning that two runs starting at the same moment may both
proceed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from . import objects
from .errors import LockedError
from .remote import display_name

__all__ = ["HEARTBEAT_S", "STALE_S", "hold_object"]

log = logging.getLogger(__name__)

#: Seconds between two heartbeats of a lock's holder.
HEARTBEAT_S = 10.0
#: A lock whose heartbeat is older than this many seconds is taken over.
STALE_S = 120.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _record(token: str) -> bytes:
    record = {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time(), "token": token}
    return json.dumps(record).encode()


def _stale(holder: dict[str, Any], modified: float | None) -> bool:
    """Whether a lock record's holder is gone: a dead PID on this host, or no heartbeat for :data:`STALE_S`."""
    beat = holder.get("heartbeat")
    beat = float(beat) if isinstance(beat, int | float) else modified
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int) and not _alive(holder["pid"]):
        return True
    return beat is None or time.time() - beat > STALE_S


class _Heartbeat(threading.Thread):
    def __init__(self, url: str, token: str, etag: str | None) -> None:
        super().__init__(name="geoseg-lock-heartbeat", daemon=True)
        self.url, self.token, self.etag = url, token, etag
        self.stop = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            try:
                self.etag = objects.write_bytes(self.url, _record(self.token), if_match=self.etag)
            except objects.ObjectChangedError:
                self.lost = True
                shown = display_name(self.url)
                log.error("the lock %s was taken over by another run; this run's outputs may be replaced", shown)
                return
            except Exception as exc:  # a network hiccup: the next beat tries again, well before STALE_S
                log.warning("cannot refresh the lock %s (%s)", display_name(self.url), exc)


@contextlib.contextmanager
def hold_object(url: str, busy: str, *, error: type[LockedError] = LockedError) -> Iterator[None]:
    """Hold the lock object at `url` for the duration of the block (see the module docstring).

    Raises
    ------
    LockedError
        A live run holds it: `error` with ``f"{busy} (pid N)"`` (``(pid N on HOST)`` for another host).
    GeosegIOError
        The lock cannot be read or written (missing bucket, refused credentials, unreachable endpoint).
    """
    token = uuid.uuid4().hex
    try:
        etag = _acquire(url, busy, token)
    except LockedError as exc:
        raise error(str(exc)) from None
    beat = _Heartbeat(url, token, etag)
    beat.start()
    try:
        yield
    finally:
        beat.stop.set()
        beat.join()
        if not beat.lost:
            with contextlib.suppress(Exception):
                meta = objects.head(url)
                if meta is not None and (beat.etag is None or meta.get("e_tag") == beat.etag):
                    objects.remove(url)


def _acquire(url: str, busy: str, token: str) -> str | None:
    from obstore.exceptions import NotSupportedError

    for _ in range(5):
        try:
            return objects.write_bytes(url, _record(token), create=True)
        except objects.ObjectChangedError:
            pass
        except NotSupportedError:
            log.warning("%s: the server has no conditional writes; the lock is best effort", display_name(url))
            if objects.exists(url):
                _refuse_or_take(url, busy, token)
            return objects.write_bytes(url, _record(token))
        taken = _refuse_or_take(url, busy, token)
        if taken is not None:
            return taken
    raise LockedError(f"{busy} (the lock {display_name(url)} keeps changing)")


def _refuse_or_take(url: str, busy: str, token: str) -> str | None:
    """Raise LockedError for a live lock; take a stale one over (its new ETag), or None if it vanished or moved."""
    got = objects.read_bytes(url)
    if got is None:
        return None  # released meanwhile: try to create it again
    data, etag = got
    try:
        holder = json.loads(data)
        if not isinstance(holder, dict):
            raise ValueError("not a record")
    except ValueError:
        holder = {}
    meta = objects.head(url) if "heartbeat" not in holder else None
    modified = meta["last_modified"].timestamp() if meta and meta.get("last_modified") else None
    if not _stale(holder, modified):
        where = "" if holder.get("host") == socket.gethostname() else f" on {holder.get('host', 'another host')}"
        raise LockedError(f"{busy} (pid {holder.get('pid', 'unknown')}{where})")
    log.warning(
        "taking over the lock %s of a run that ended (pid %s on %s)",
        display_name(url),
        holder.get("pid", "unknown"),
        holder.get("host", "an unknown host"),
    )
    try:
        return objects.write_bytes(url, _record(token), if_match=etag)
    except objects.ObjectChangedError:
        return None  # another run took it over first, or its holder beat: look again
