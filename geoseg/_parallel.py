"""Map a function over blocks in worker processes, in order, a bounded number at a time.

Kept free of heavy imports so that a worker starts quickly.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

__all__ = [
    "BlockPool",
    "ClientPool",
    "Pool",
    "ProgressCallback",
    "Timed",
    "imap",
    "in_background",
    "release_free_memory",
]

T = TypeVar("T")

#: progress(stage, completed, total); stages: "segment", "vectorize", "export".
ProgressCallback = Callable[[str, int, int], None]


@dataclass
class Timed:
    """A task result with the seconds it spent per stage."""

    value: Any
    seconds: dict[str, float] = field(default_factory=dict)


def release_free_memory() -> None:
    """Hand memory the C heap holds but no longer uses back to the operating system (glibc only).

    Freed block-sized arrays (accumulators, tiles, cells) stay resident in
    glibc's heaps until trimmed; a run calls this between its stages so that
    the next one does not start from the previous one's high-water mark.
    (Lowering glibc's mmap threshold instead would return them at once, but
    then every forward pass maps and faults in its activations afresh:
    1.5x slower on CPU, measured.)
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _glibc() -> Any:
    """The C library where it is glibc on Linux (which has ``malloc_trim`` and ``mallopt``), else None."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None  # musl has neither
    except OSError:
        return None


_MALLOC_TUNED = False
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_MMAP_THRESHOLD = 32 << 20  # glibc's own ceiling for its dynamic mmap threshold (64-bit)


def undo_small_malloc_thresholds() -> None:
    """Give glibc's heap back its usual thresholds where the environment pinned them low (once per process).

    A Dask nanny starts its worker with ``MALLOC_TRIM_THRESHOLD_=65536``
    (``distributed.nanny.pre-spawn-environ``), which also freezes glibc's
    mmap threshold at 128 KiB: every tile and activation buffer is then mapped,
    faulted in and unmapped afresh. A whole 2048² scene (FCN-ResNet18, CPU,
    one thread) took 10.0 s with that setting, 6.1 s without it and 6.0 s
    with it undone here. geoseg returns memory itself between stages
    (:func:`release_free_memory`), so large buffers are reused as in any
    other process. Called by geoseg's worker preload, by every scene task and
    wherever a model is loaded (so on any cluster's workers).
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED or "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return
    _MALLOC_TUNED = True
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD)


def in_background(fn: Callable[..., T], *args: Any) -> Future[T]:
    """``fn(*args)`` started in a daemon thread (one that does not hold up the exit of a failed run)."""
    import threading

    fut: Future[T] = Future()

    def work() -> None:
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:
            fut.set_exception(exc)

    threading.Thread(target=work, name=getattr(fn, "__name__", "background"), daemon=True).start()
    return fut


class _Result(Protocol):
    def result(self) -> Any: ...

    def cancel(self) -> Any: ...


class Pool(Protocol):
    """Something that runs ``fn(item)`` somewhere and hands back a future."""

    workers: int

    def submit(self, fn: Callable[[Any], Any], item: Any) -> _Result: ...


class BlockPool:
    """``workers`` spawned processes (none with one worker: calls then run here, at submission)."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self.executor = None
        if self.workers > 1:
            import multiprocessing as mp
            import os
            from concurrent.futures import ProcessPoolExecutor

            from ._lifeline import bind_to_parent

            self.executor = ProcessPoolExecutor(
                self.workers,
                mp_context=mp.get_context("spawn"),
                initializer=bind_to_parent,  # a killed run leaves no worker behind
                initargs=(os.getpid(),),
            )

    def submit(self, fn: Callable[[Any], Any], item: Any) -> _Result:
        if self.executor is not None:
            return self.executor.submit(fn, item)
        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(item))
        except Exception as exc:
            fut.set_exception(exc)
        return fut

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True)

    def terminate(self) -> None:
        """Stop at once: end the worker processes without waiting for the cells they are on."""
        if self.executor is None:
            return
        terminate = getattr(self.executor, "terminate_workers", None)  # Python >= 3.14
        if terminate is not None:
            terminate()
            return
        for proc in list((getattr(self.executor, "_processes", None) or {}).values()):
            proc.terminate()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> BlockPool:
        return self

    def __exit__(self, et: type[BaseException] | None, *exc: object) -> None:
        # On an error or an interrupt (Ctrl-C, SIGTERM) the cells in flight are of no use: do not wait for them.
        if et is None:
            self.close()
        else:
            self.terminate()


class ClientPool:
    """The workers of a ``distributed`` client."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.workers = max(1, sum(client.nthreads().values()))

    def submit(self, fn: Callable[[Any], Any], item: Any) -> _Result:
        return self.client.submit(fn, item, pure=False)


def imap(
    pool: Pool,
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    window: int,
    report: Callable[[int], None] | None = None,
) -> Iterator[Any]:
    """``fn(item)`` for every item, in order, with at most `window` submitted and not yet consumed.

    The window is the backpressure: results wait in memory only until the
    consumer takes them, and no more than `window` of them exist at once.
    """
    pending: deque[_Result] = deque()
    it = iter(items)
    finished = 0

    def top_up() -> None:
        while len(pending) < window:
            try:
                item = next(it)
            except StopIteration:
                return
            pending.append(pool.submit(fn, item))

    try:
        top_up()
        while pending:
            value = pending.popleft().result()
            top_up()
            finished += 1
            if report:
                report(finished)
            yield value
    finally:
        for fut in pending:
            fut.cancel()
