"""Prefect 3 flow: map one region with ``geoseg batch`` on a schedule.

Needs the optional extra: ``pip install "geoseg[prefect]"``.

Run once, here and now (Prefect starts a temporary local server when no
``PREFECT_API_URL`` is set)::

    python -c "from workflows.prefect.flow import map_region; map_region('workflows/region.yaml')"

Serve it on a monthly schedule (a long-running process, e.g. a systemd service
or a container; runs appear in the Prefect UI of ``PREFECT_API_URL``)::

    python workflows/prefect/flow.py

Or, instead of ``serve``, deploy it to a work pool, where workers pick the runs
up (the same schedule; ``--timezone Europe/Berlin`` for local time)::

    prefect deploy workflows/prefect/flow.py:map_region -n geoseg-region -p <pool> --cron "30 2 1 * *"
    prefect worker start -p <pool>

The batch skips scenes whose outputs are current and resumes interrupted
ones, so a retried or repeated flow run only does the missing work. geoseg's
own log records also reach the Prefect UI with
``PREFECT_LOGGING_EXTRA_LOGGERS=geoseg``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from geoseg.batch import load_job, run_batch
from geoseg.errors import JobLockedError

__all__ = ["ScenesFailed", "map_region"]

#: Errors of a whole batch that a later try may not hit: the job's lock held by
#: another run, a network share that hiccupped. Scene failures are retried by
#: the batch itself (``retries:`` in the job file), not here.
_PERMANENT_OS_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)


class ScenesFailed(RuntimeError):
    """Some scenes of the batch failed; the others were mapped and the manifest lists them all."""

    def __init__(self, failed: list[str], manifest: Path) -> None:
        shown = ", ".join(failed[:10]) + (f" and {len(failed) - 10} more" if len(failed) > 10 else "")
        super().__init__(f"{len(failed)} scene(s) failed: {shown}; see {manifest}")
        self.failed = list(failed)
        self.manifest = manifest


def _transient(_task: Any, _task_run: Any, state: Any) -> bool:
    """Retry condition: only the errors another try can get past."""
    try:
        state.result()
    except JobLockedError:
        return True
    except _PERMANENT_OS_ERRORS:
        return False
    except OSError:
        return True
    except Exception:
        return False
    return False


@task(
    name="geoseg-batch",
    retries=2,
    retry_delay_seconds=[600, 1800],
    retry_jitter_factor=0.2,
    retry_condition_fn=_transient,
    cache_policy=NONE,  # every run must look at the scenes again; the batch skips current ones itself
)
def run_job(job: str, retries: int | None = None) -> Path:
    """Run the batch of job file `job`; log each scene's outcome; raise if a scene failed."""
    logger = get_run_logger()
    path = Path(job).expanduser().resolve()
    batch_job = load_job(path, retries=retries)  # retries=None keeps the job file's value
    logger.info("geoseg batch %s: region %s", path, batch_job.region)
    result = run_batch(batch_job)
    for outcome in result.scenes:
        detail = f"{outcome.status}, {outcome.attempts} attempt(s), {outcome.seconds:.1f} s"
        if outcome.ok:
            logger.info("%s: %s", outcome.scene, detail)
        else:
            logger.error("%s: %s: %s", outcome.scene, detail, outcome.error)
    if result.regional is not None:
        logger.info("regional layer: %s", result.regional)
    logger.info("manifest: %s", result.manifest)
    if result.failed:
        raise ScenesFailed(result.failed, result.manifest)
    return result.manifest


@flow(name="geoseg-map-region")
def map_region(job: str = "workflows/region.yaml", retries: int | None = None) -> Path:
    """Map every scene of a regional geoseg job; fails if any scene failed.

    `job` is the job file (relative to the working directory of the process
    running the flow); `retries` overrides its per-scene ``retries:``. Returns
    the manifest path.
    """
    return run_job(job, retries)


if __name__ == "__main__":
    # The schedule is in UTC; for local time pass schedules=[prefect.schedules.Cron("30 2 1 * *",
    # timezone="Europe/Berlin")] instead of cron=. Runs of one deployment can still overlap
    # (a manual run during a scheduled one): the second one's task finds the job locked and
    # retries after 10 and 30 minutes, then fails with JobLockedError.
    map_region.serve(
        name="geoseg-region-monthly",
        cron="30 2 1 * *",
        parameters={"job": "workflows/region.yaml"},
        tags=["geoseg"],
    )
