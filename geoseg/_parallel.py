"""Run a function over blocks in this process and spawned worker processes.

Kept free of heavy imports so that a worker starts (and joins the work) quickly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["BlockPool"]

# Work shared between this process and spawned workers through one counter: the caller polygonises
# blocks from the start and workers join as soon as they have started (starting one takes ~1 s).
_COUNTER: Any = None


def _init_worker(counter: Any) -> None:
    global _COUNTER
    _COUNTER = counter


def _drain(
    fn: Callable[[Any], Any], items: Sequence[Any], counter: Any = None, report: Callable[[int], None] | None = None
) -> dict[int, Any]:
    counter = counter if counter is not None else _COUNTER
    out: dict[int, Any] = {}
    while True:
        with counter.get_lock():
            i = counter.value
            counter.value += 1
        if i >= len(items):
            return out
        out[i] = fn(items[i])
        if report:
            report(min(counter.value, len(items)))


class BlockPool:
    """Runs a function over blocks in this process and ``workers - 1`` spawned processes."""

    def __init__(self, workers: int) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("spawn")
        self.counter = ctx.Value("l", 0)
        self.executor = (
            ProcessPoolExecutor(workers - 1, mp_context=ctx, initializer=_init_worker, initargs=(self.counter,))
            if workers > 1
            else None
        )
        self.workers = workers

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], report: Callable[[int], None] | None = None) -> list:
        with self.counter.get_lock():
            self.counter.value = 0
        futures = [self.executor.submit(_drain, fn, items) for _ in range(self.workers - 1)] if self.executor else []
        results = _drain(fn, items, self.counter, report)
        for f in futures:
            results.update(f.result())
        return [results[i] for i in range(len(items))]

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True)
