"""Named points where a test can stop a run, to kill or signal it there without racing it.

With ``GEOSEG_FAILPOINT=NAME`` in its environment, a geoseg process (or any of
its workers) that reaches :func:`failpoint` ``NAME`` writes its process id into
the file named by ``GEOSEG_FAILPOINT_FILE`` and then waits there until it is
killed or interrupted. ``NAME:N`` waits the N-th time one process reaches the
point (e.g. ``segment:6``: after six blocks are in the store, with one worker
thread no seventh is started). One process stops there: once the file names
another process, a process passes the point (a Dask worker started again after
the test killed the first one runs through). Tests use it to SIGKILL or
SIGTERM a run at a known stage (segmentation, the vector stage, the COG
export) instead of polling and hoping the stage lasts long enough. Without the
variable it costs one dictionary lookup.

Points: ``segment`` (a worker, after writing a block to the store),
``vectorize`` (a vector-cell worker), ``export`` (the class COG's scratch
file written, before the COG copy).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

__all__ = ["failpoint"]


_reached: Counter[str] = Counter()
_lock = threading.Lock()


def failpoint(name: str) -> None:
    """Stop here forever if the environment names this point (see the module docstring)."""
    wanted = os.environ.get("GEOSEG_FAILPOINT")
    if wanted is None or wanted.split(":")[0] != name:
        return
    _, _, nth = wanted.partition(":")
    with _lock:
        _reached[name] += 1
        if _reached[name] < int(nth or 1):
            return
    marker = os.environ.get("GEOSEG_FAILPOINT_FILE")
    if marker:
        pid = str(os.getpid())
        tmp = f"{marker}.{pid}-{threading.get_ident()}"
        with open(tmp, "w") as f:
            f.write(f"{pid}\n")
        try:
            os.link(tmp, marker)  # appears complete; the first process to get here stops, later ones pass
        except FileExistsError:
            if Path(marker).read_text().strip() != pid:
                return
        finally:
            os.unlink(tmp)
    while True:  # until killed; a signal handler may raise out of the sleep
        time.sleep(3600)
