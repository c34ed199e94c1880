"""Where a run's tasks run: Dask's local schedulers or a distributed cluster, and progress counting."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from typing import Any

from .._parallel import BlockPool, ClientPool, Pool, ProgressCallback
from ..config import RunConfig
from ..errors import GeosegIOError
from ..objects import is_remote_dir

__all__ = ["Progress", "ProgressCallback", "Runner", "local_cluster"]

_STAGES = {"stitch": "segment"}


class Progress:
    """Count finished tasks per stage for a local Dask scheduler."""

    def __init__(self, totals: dict[str, int], report: ProgressCallback | None) -> None:
        self.totals, self.report = totals, report
        self.done: Counter[str] = Counter()

    def callback(self) -> Any:
        from dask.callbacks import Callback

        return Callback(posttask=lambda key, *_: self.step(key))

    def step(self, key: Any) -> None:
        name = key[0] if isinstance(key, tuple) else str(key)
        stage = _STAGES.get(name.split("-")[0])
        if stage and self.report:
            self.done[stage] += 1
            self.report(stage, self.done[stage], self.totals[stage])


@contextlib.contextmanager
def local_cluster(n: int, *, own_folders: bool) -> Iterator[Any]:
    """A ``distributed.LocalCluster`` of `n` single-thread process workers, closed on exit.

    Nannies and workers end with this process, however it ends. With
    `own_folders` (outputs in object storage) each worker runs in a scratch
    folder of its own, sharing none with this process, as a worker on another
    machine would; the scratch folders are removed on exit.
    """
    from distributed import LocalCluster

    from .._lifeline import PRELOAD

    preload, options = [PRELOAD], {}
    with contextlib.ExitStack() as stack:
        if own_folders:
            from ._workdir import PRELOAD as WORKDIR

            scratch = tempfile.mkdtemp(prefix="geoseg-workers-")
            stack.callback(shutil.rmtree, scratch, ignore_errors=True)
            preload.append(WORKDIR)
            options["local_directory"] = scratch
        yield stack.enter_context(
            LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                preload=preload,
                preload_nanny=[PRELOAD],
                **options,
            )
        )


class Runner:
    """Runs task graphs on the configured scheduler; holds a distributed client when there is one."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.client: Any = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Runner:
        sched = self.cfg.scheduler
        if sched.startswith(("tcp://", "tls://", "local")):
            from distributed import Client

            if sched.startswith("local"):
                from ..predict.runtime import local_workers

                n = int(sched.split(":")[1]) if ":" in sched else (self.cfg.workers or local_workers(self.cfg.device))
                cluster = self._stack.enter_context(local_cluster(n, own_folders=is_remote_dir(self.cfg.outdir)))
                self.client = Client(cluster)
            else:
                try:
                    self.client = Client(sched, timeout="20s")
                except OSError as exc:
                    raise GeosegIOError(f"cannot reach the Dask scheduler at {sched} ({exc}); is it running?") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
        self._stack.close()

    @contextlib.contextmanager
    def pool(self) -> Iterator[Pool]:
        """Workers for the vector cells: the cluster's, or processes here (this process when synchronous)."""
        if self.client is not None:
            yield ClientPool(self.client)
            return
        n = 1 if self.cfg.scheduler == "synchronous" else (self.cfg.workers or os.cpu_count() or 1)
        import multiprocessing

        if multiprocessing.current_process().daemon:  # a Dask worker mapping a whole scene may start no process
            n = 1
        with BlockPool(n) as pool:
            yield pool

    def compute(
        self, dsk: dict[str, Any], keys: list[str], totals: dict[str, int], progress: ProgressCallback | None
    ) -> list[Any]:
        """The results of `keys` in the task graph `dsk`, reporting finished tasks to `progress`."""
        counter = Progress(totals, progress)
        if self.client is not None:
            from distributed import as_completed

            futures = self.client.get(dsk, keys, sync=False)
            for fut in as_completed(futures):
                counter.step(fut.key)
            return [f.result() for f in futures]
        import dask.local
        import dask.multiprocessing
        import dask.threaded

        sched = self.cfg.scheduler
        with counter.callback():
            if sched == "synchronous":
                return list(dask.local.get_sync(dsk, keys))
            if sched == "threads":
                from concurrent.futures import ThreadPoolExecutor

                pool = ThreadPoolExecutor(self.cfg.workers or os.cpu_count() or 1, thread_name_prefix="geoseg-task")
                try:
                    return list(dask.threaded.get(dsk, keys, pool=pool))
                finally:
                    # A failed task ends the graph at once, but the tasks already running go on writing
                    # blocks: wait for them, so nothing writes to the store after the run has ended.
                    pool.shutdown(wait=True, cancel_futures=True)
            from functools import partial

            from .._lifeline import bind_to_parent

            bind = partial(bind_to_parent, os.getpid())
            return list(dask.multiprocessing.get(dsk, keys, num_workers=self.cfg.workers, initializer=bind))
