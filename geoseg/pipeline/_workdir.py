"""A Dask ``distributed`` preload: each worker process works in its own folder, its scratch directory.

``geoseg run -o s3://…`` with a ``local:N`` cluster starts its workers with
this preload: a worker then sees no file relative to the client's working
directory, as a worker on another machine would not, and everything a task
needs reaches it as a URL or an absolute path (the working store is in
object storage).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["PRELOAD", "dask_setup"]

#: The ``preload`` entry that moves each worker into its own folder.
PRELOAD = __name__


def dask_setup(worker: Any) -> None:
    """Preload hook: change into the worker's own ``local_directory``."""
    os.chdir(worker.local_directory)
