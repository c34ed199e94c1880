"""Worker processes end when the process that started them ends, however it ends.

A parent killed with SIGKILL (an out-of-memory killer, a scheduler's hard
stop, a user's ``kill -9``) runs no clean-up. Without this module its worker
processes (vector cells, a ``local:N`` Dask cluster's nannies and workers, the
``processes`` scheduler's pool) would live on under PID 1, holding 100-300 MB
each and the parent's stdout and stderr: a caller waiting on
``subprocess.communicate()`` (a scheduler, the QGIS plugin) would wait forever.

Every process geoseg starts calls :func:`bind_to_parent` first thing:

- on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` has the kernel kill it the
  moment its parent exits (the parent *thread* that started it, in Linux's
  terms: geoseg starts workers from threads that outlive them);
- on every platform, a daemon thread checks twice a second that its parent
  is still alive, and ends the process otherwise (this also covers macOS and
  Windows, where there is no PDEATHSIG; allow up to a second there).

Processes started by ``multiprocessing`` also leave its resource tracker
behind; it exits by itself once the last worker holding its pipe is gone.

Dask ``distributed`` loads this module as a *preload* in nannies and workers
(``preload=["geoseg._lifeline"]``), which calls :func:`dask_setup`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Any

__all__ = ["PRELOAD", "bind_to_parent", "dask_setup"]

#: The ``preload`` / ``preload_nanny`` entry that binds Dask processes to their parents.
PRELOAD = __name__

_PR_SET_PDEATHSIG = 1
_POLL_S = 0.5
_bound = False


def bind_to_parent(parent: int | None = None) -> None:
    """End this process when `parent` (default: the current parent process) ends.

    Idempotent; call it first thing in a worker process (e.g. as a
    ``ProcessPoolExecutor`` initializer with ``initargs=(os.getpid(),)`` in
    the parent, which also covers a parent that died before the worker ran).
    """
    global _bound
    if _bound:
        return
    _bound = True
    parent = os.getppid() if parent is None else parent
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if not _alive(parent):  # it died before the prctl took effect
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="geoseg-lifeline", daemon=True).start()


def _alive(parent: int) -> bool:
    if os.getppid() != parent:  # reparented: the parent is gone (POSIX)
        return False
    if sys.platform == "win32":
        import psutil

        return bool(psutil.pid_exists(parent))
    return True


def _watch(parent: int) -> None:
    while _alive(parent):
        time.sleep(_POLL_S)
    os._exit(1)


def dask_setup(worker_or_nanny: Any) -> None:
    """Preload hook of Dask ``distributed``: bind the nanny or worker process to its parent.

    In a worker it also undoes the small malloc thresholds its nanny set
    (see :func:`geoseg._parallel.undo_small_malloc_thresholds`).
    """
    bind_to_parent()
    from ._parallel import undo_small_malloc_thresholds

    undo_small_malloc_thresholds()
