"""Several scenes of a regional job at once: on a Dask cluster, or two stages overlapped in this process.

**On a cluster** (``scheduler: local:N`` or ``tcp://HOST:PORT``) each scene is
one task, :func:`map_scene`, that runs the whole of :func:`geoseg.pipeline.run`
(segmentation, vector stage, COG export, run report) on a worker, its blocks
on the worker's own threads, and sends back a :class:`SceneSummary` of a few
numbers and paths. The client decides which scenes are current, keeps at most
``scenes_in_flight`` scene tasks submitted, books outcomes in the order they
arrive (the manifest keeps the job's order), submits a scene again after an
unexpected failure, and asks a worker for the regional merge.

A worker that dies while mapping a scene (SIGKILL, out of memory, a lost
machine) makes its task fail with ``KilledWorker``: the client counts it as
an attempt and, within ``retries``, submits the scene again; the new attempt
resumes from the blocks in the scene's working store. On a ``local:N``
cluster the scheduler reports the loss at once
(``distributed.scheduler.allowed-failures`` is 0), so that every lost worker
is one attempt in the manifest; a ``tcp://`` cluster first reruns the task
itself as often as its own ``allowed-failures`` says (3 by default).

**Here** (``scenes_in_flight: 2`` with a local scheduler) the steps of
consecutive scenes overlap: while scene *i* is vectorised, exported and
reported in a background thread, scene *i+1* is prepared and segmented; at
most one scene is in each stage.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ._parallel import Pool, in_background
from .batch import BatchJob, Book, _one_line, _outcome_from_report, interrupted, now
from .errors import GeosegError, GeosegIOError
from .pipeline.scheduler import Runner

if TYPE_CHECKING:
    from .config import RunConfig
    from .pipeline import Prepared, RunResult, Segmented

__all__ = ["SceneSummary", "cluster", "map_scene", "on_cluster", "overlapped"]

log = logging.getLogger(__name__)


# -- a scene as one task ----------------------------------------------------------------------


@dataclass(frozen=True)
class SceneSummary:
    """What a worker sends back for one scene: a few numbers and paths, no arrays."""

    status: Literal["done", "failed"]
    error: str | None = None
    #: the failure was unexpected (not the scene's own fault): another attempt may succeed
    retry: bool = False
    traceback: str | None = None
    polygons: int = 0
    class_areas_m2: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    resumed_blocks: int = 0
    started: str | None = None
    finished: str | None = None


def map_scene(cfg: RunConfig, shipped: str | None = None) -> SceneSummary:
    """Map one scene whole where this runs (a cluster worker): segment, vectorise, export, report.

    `cfg` has the ``threads`` scheduler; without `cfg.workers` the scene's
    blocks get the worker's thread count. Where the model's path does not
    exist here, the copy :func:`ship_model` sent (file name `shipped`) is
    used. Every failure comes back as a summary; a
    :class:`~geoseg.errors.GeosegError` (the scene is unreadable or does not
    fit the model) is marked as not worth another attempt.
    """
    from ._parallel import release_free_memory, undo_small_malloc_thresholds
    from .pipeline import run

    undo_small_malloc_thresholds()
    started = now()
    if cfg.workers is None:
        cfg = cfg.model_copy(update={"workers": _worker_threads()})
    if shipped and not Path(cfg.model).is_file():
        from distributed import get_worker

        cfg = cfg.model_copy(update={"model": Path(get_worker().local_directory, shipped)})
    try:
        result = run(cfg)
    except GeosegError as exc:
        return SceneSummary("failed", _one_line(exc), started=started, finished=now())
    except Exception as exc:
        return SceneSummary(
            "failed", _one_line(exc), retry=True, traceback=traceback.format_exc(), started=started, finished=now()
        )
    finally:
        release_free_memory()
    report = result.report
    return SceneSummary(
        "done",
        polygons=report.polygons,
        class_areas_m2=dict(report.class_areas),
        outputs={**report.outputs, "report": str(result.outputs["report"])},
        resumed_blocks=report.grid.resumed_blocks,
        started=started,
        finished=now(),
    )


def ship_model(client: Any, model: Path, sha256: str) -> str | None:
    """Send `model` to the cluster's workers that cannot read it at its path; the file name they keep it under.

    Workers on other machines see no file of the client's. The model is then
    uploaded once into each worker's local directory (workers that join later
    get it too), named after its hash so that scenes find it; its bytes, and
    with them the run reports' model hash, are the client's. None where every
    worker reads the model at its own path (a shared file system, or ``local:N``).
    """
    import shutil
    import tempfile

    seen = client.run(os.path.isfile, str(model))
    if seen and all(seen.values()):
        return None
    name = f"geoseg-model-{sha256[:24]}{model.suffix}"
    with tempfile.TemporaryDirectory(prefix="geoseg-ship-") as tmp:
        copy = Path(tmp, name)
        try:
            copy.symlink_to(model.resolve())
        except OSError:
            shutil.copyfile(model, copy)
        client.upload_file(str(copy), load=False)
    log.info("sent the model to %d worker(s) that cannot read %s", sum(not v for v in seen.values()), model)
    return name


def _worker_threads() -> int:
    """The thread count of the Dask worker running this task (the cores here outside a worker)."""
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return os.cpu_count() or 1


@contextlib.contextmanager
def cluster(job: BatchJob) -> Iterator[tuple[Any, int | None, int]]:
    """A client of the job's cluster: ``(client, threads per scene, workers)``.

    ``local:N`` starts N single-thread worker processes here, each scene using
    ``cores // N`` threads; on ``tcp://`` a scene uses its worker's threads
    (None). `workers` is the cluster's worker count when it is joined.

    Raises
    ------
    GeosegIOError
        No Dask scheduler answers at the address.
    """
    import dask
    from distributed import Client

    sched = job.scheduler
    if sched.startswith("local"):
        from .pipeline.scheduler import local_cluster
        from .predict.runtime import local_workers

        n = int(sched.split(":")[1]) if ":" in sched else (job.workers or local_workers(job.run.device))
        threads = max(1, (os.cpu_count() or 1) // n)
        settings = {
            # a lost worker fails its scene's task at once: the job retries it and counts the attempt
            "distributed.scheduler.allowed-failures": 0,
            # a scene's vector stage may start processes (also in workers started again after a loss)
            "distributed.worker.daemon": False,
        }
        with dask.config.set(settings), local_cluster(n, own_folders=job.remote) as local, Client(local) as client:
            yield client, threads, n
        return
    try:
        client = Client(sched, timeout="20s")
    except OSError as exc:
        raise GeosegIOError(f"cannot reach the Dask scheduler at {sched} ({exc}); is it running?") from None
    with client:
        yield client, None, max(1, len(client.nthreads()))


def on_cluster(
    job: BatchJob,
    todo: Iterator[tuple[int, RunConfig]],
    book: Book,
    client: Any,
    threads: int | None,
    in_flight: int,
    shipped: str | None = None,
) -> bool:
    """Map the scenes of `todo` as tasks on `client`'s cluster, at most `in_flight` at once; True if any ran."""
    from distributed import as_completed

    outcomes = book.outcomes
    running: dict[Any, tuple[int, RunConfig]] = {}
    first_submit: dict[int, float] = {}
    queue = as_completed()

    def submit(i: int, cfg: RunConfig) -> None:
        outcomes[i].attempts += 1
        first_submit.setdefault(i, time.perf_counter())
        future = client.submit(
            map_scene, cfg, shipped, pure=False, key=f"map_scene-{outcomes[i].scene}-{os.urandom(4).hex()}"
        )
        running[future] = (i, cfg)
        queue.add(future)

    def top_up() -> None:
        while len(running) < in_flight:
            nxt = next(todo, None)
            if nxt is None:
                return
            i, cfg = nxt
            submit(i, cfg.model_copy(update={"workers": threads}) if threads else cfg)

    ran = False
    try:
        top_up()
        for future in queue:
            i, cfg = running.pop(future)
            ran = True
            try:
                summary: SceneSummary = future.result()
            except Exception as exc:  # KilledWorker, a lost connection: the worker, not the scene
                summary = SceneSummary("failed", _one_line(exc), retry=True, traceback=traceback.format_exc())
            outcome = outcomes[i]
            if summary.status == "failed" and summary.retry and outcome.attempts <= job.retries:
                book.retrying(i, summary.error or "", summary.traceback, job.retries)
                submit(i, cfg)
                continue
            outcome.status, outcome.error = summary.status, summary.error
            outcome.started = outcome.started or summary.started
            outcome.finished = summary.finished
            if summary.status == "done":
                outcome.polygons = summary.polygons
                outcome.class_areas_m2 = summary.class_areas_m2
                outcome.outputs = summary.outputs
                outcome.resumed_blocks = summary.resumed_blocks
            outcome.seconds = round(time.perf_counter() - first_submit.pop(i), 3)
            book.finish(i)
            top_up()
    except KeyboardInterrupt:
        for future, (i, _) in running.items():
            future.cancel()
            interrupted(outcomes[i], time.perf_counter() - first_submit[i])
        book.save()
        raise
    return ran


# -- two stages overlapped here ---------------------------------------------------------------


#: Seconds an interrupted job waits for the vector stage in the background to reach its next cell.
_STOP_WAIT_S = 5.0


class _Stopped(Exception):
    """The job was interrupted: a background stage ends at its next step."""


@dataclass
class _Front:
    """A scene segmented, awaiting its vector stage; `cleanup` holds its output lock."""

    prep: Prepared
    seg: Segmented
    cleanup: contextlib.ExitStack
    t0: float


def overlapped(job: BatchJob, todo: Iterator[tuple[int, RunConfig]], book: Book) -> bool:
    """Map the scenes of `todo` here, segmenting each while the one before it is vectorised; True if any ran.

    The outputs are those of mapping the scenes one after another: the same
    steps run on the same data, only at the same time as another scene's.
    """
    stop = threading.Event()
    outcomes = book.outcomes
    ran = False
    front_i: int | None = None  # the scene being prepared and segmented
    front: _Front | None = None  # ... and segmented, not yet handed to the vector stage
    behind: tuple[int, RunConfig, _Front, Future[RunResult]] | None = None
    pools: list[Any] = []  # the vector stage's cell workers, ended at once when the job is interrupted

    def progress(stage: str, done: int, total: int) -> None:
        if stop.is_set() and stage != "export":  # "export" is reported once the scene is complete
            raise _Stopped
        book.stage(stage, done, total)

    try:
        for i, cfg in todo:
            ran, front_i = True, i
            front = _segment(job, cfg, book, i, progress)
            if behind is not None:
                _collect(job, behind, book, progress)
                behind = None
            if front is not None:
                behind, front = (i, cfg, front, in_background(_vector_stage, front, progress, pools)), None
            front_i = None
        if behind is not None:
            _collect(job, behind, book, progress)
            behind = None
    except KeyboardInterrupt:
        stop.set()
        if front is not None:
            front.cleanup.close()  # its store holds every block: the next run exports from it
        if front_i is not None and outcomes[front_i].status != "interrupted":
            interrupted(outcomes[front_i], time.perf_counter() - front.t0 if front else 0.0)
        if behind is not None:
            i, _, segmented, future = behind
            for pool in list(pools):  # the vector stage fails at once, removing its temporary files
                pool.terminate()
            # A vector stage in this thread stops at its next cell. One that does not is left to the end of
            # this process: its files are written under temporary names until complete.
            wait([future], timeout=_STOP_WAIT_S)
            if future.done() and future.exception() is None:
                _done(outcomes[i], future.result(), segmented.t0)
            elif outcomes[i].status != "interrupted":
                interrupted(outcomes[i], time.perf_counter() - segmented.t0)
        book.save()
        raise
    return ran


def _segment(job: BatchJob, cfg: RunConfig, book: Book, i: int, progress: Any) -> _Front | None:
    """Prepare and segment scene `i`, trying again after unexpected failures; None if it failed (booked)."""
    from .pipeline import prepare, segment
    from .pipeline.scheduler import Runner

    outcome = book.outcomes[i]
    outcome.started = now()
    t0 = time.perf_counter()
    for attempt in range(1, job.retries + 2):
        outcome.attempts = attempt
        cleanup = contextlib.ExitStack()
        try:
            prep = prepare(cfg, cleanup)
            with Runner(cfg) as runner:
                seg = segment(prep, runner, cleanup, progress)
        except BaseException as exc:
            cleanup.__exit__(type(exc), exc, exc.__traceback__)
            if isinstance(exc, KeyboardInterrupt):
                interrupted(outcome, time.perf_counter() - t0)
                raise
            if not isinstance(exc, Exception):
                raise
            outcome.status, outcome.error = "failed", _one_line(exc)
            if isinstance(exc, GeosegError):
                break
            book.retrying(i, outcome.error, traceback.format_exc(), job.retries)
            continue
        return _Front(prep, seg, cleanup, t0)
    outcome.seconds = round(time.perf_counter() - t0, 3)
    outcome.finished = now()
    book.finish(i)
    return None


class _Stoppable(Runner):
    """A runner whose vector-cell workers are listed in `pools` while they work, so that a stop can end them."""

    def __init__(self, cfg: RunConfig, pools: list[Any]) -> None:
        super().__init__(cfg)
        self.pools = pools

    @contextlib.contextmanager
    def pool(self) -> Iterator[Pool]:
        with super().pool() as pool:
            self.pools.append(pool)
            try:
                yield pool
            finally:
                self.pools.remove(pool)


def _vector_stage(front: _Front, progress: Any, pools: list[Any]) -> RunResult:
    """Vectorise, export and report a segmented scene (in the background thread), then release its lock."""
    from .pipeline import export, report, vectorize

    prep, seg = front.prep, front.seg
    try:
        with _Stoppable(prep.cfg, pools) as runner:
            vec = vectorize(prep, seg, runner, progress)
        out = export(prep, seg, vec)
        result = report(prep, seg, vec, out, progress)
    except BaseException as exc:
        front.cleanup.__exit__(type(exc), exc, exc.__traceback__)
        raise
    front.cleanup.close()
    return result


def _collect(
    job: BatchJob, behind: tuple[int, RunConfig, _Front, Future[RunResult]], book: Book, progress: Any
) -> None:
    """Wait for scene `i`'s vector stage and book it; after an unexpected failure map the scene again whole."""
    from .pipeline import run

    i, cfg, front, future = behind
    outcome = book.outcomes[i]
    exc = future.exception()
    while exc is not None and not isinstance(exc, GeosegError) and outcome.attempts <= job.retries:
        book.retrying(i, _one_line(exc), "".join(traceback.format_exception(exc)), job.retries)
        outcome.attempts += 1
        try:
            return_value = run(cfg, progress=progress)  # resumes from the working store; nothing else is running
        except KeyboardInterrupt:
            interrupted(outcome, time.perf_counter() - front.t0)
            raise
        except Exception as again:
            exc = again
        else:
            _done(outcome, return_value, front.t0)
            book.finish(i)
            return
    if exc is not None:
        if isinstance(exc, _Stopped | KeyboardInterrupt):
            raise KeyboardInterrupt
        outcome.status, outcome.error = "failed", _one_line(exc)
        outcome.seconds = round(time.perf_counter() - front.t0, 3)
        outcome.finished = now()
    else:
        _done(outcome, future.result(), front.t0)
    book.finish(i)


def _done(outcome: Any, result: RunResult, t0: float) -> None:
    outcome.status, outcome.error = "done", None
    _outcome_from_report(outcome, result.report, result.outputs["report"])
    outcome.seconds = round(time.perf_counter() - t0, 3)
    outcome.finished = now()
