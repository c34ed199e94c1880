"""``geoseg batch``: a regional job of many scenes, resumable and safe to schedule."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ._options import log_options, logs_json, stop_on_sigterm


@click.command()
@click.argument("job_file", metavar="JOB.yaml", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="List what would run and what is current; map nothing.")
@click.option("--retries", type=click.IntRange(0, 20), default=None, help="Override the job's retries.")
@click.option("--merge/--no-merge", default=None, help="Override the job's merge setting.")
@click.option(
    "--scheduler",
    default=None,
    help="Override the job's scheduler: threads (here, the default), local:N (N worker processes) or "
    "tcp://HOST:PORT (a Dask cluster); on a cluster each scene is one task and several run at once.",
)
@click.option(
    "--scenes-in-flight",
    type=click.IntRange(1),
    default=None,
    help="Scenes mapped at once [default: the cluster's workers; here 1, or 2 to segment one scene "
    "while the one before it is vectorised].",
)
@log_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or summary table.")
def batch(
    job_file: Path,
    dry_run: bool,
    retries: int | None,
    merge: bool | None,
    scheduler: str | None,
    scenes_in_flight: int | None,
    quiet: bool,
) -> None:
    """Map every scene of a regional job, then merge one regional layer.

    \b
    Scenes whose outputs are current (same input, model and settings) are
    skipped; an interrupted scene resumes from its working store; a scene
    that fails is retried and then left for the next run, and the others go on.
    Writes <output>/scenes/<stem>.*, <output>/<region>.manifest.json and
    <output>/<region>.landcover.gpkg.

    \b
    With --scheduler local:N or tcp://HOST:PORT each scene is one task on a
    Dask cluster, mapped whole on a worker, --scenes-in-flight at a time (one
    per worker by default); a worker lost mid-scene costs a retry, and the
    retry resumes from the scene's working store.

    \b
    Exit status: 0 all scenes done or current, 1 a scene failed (see the
    manifest), 75 the job is already running, 130 interrupted (rerun resumes).
    See workflows/region.yaml for a commented job file.
    """
    from ..batch import load_job, run_batch
    from ._progress import BatchProgress, JsonProgress, log_result, print_batch_summary

    job = load_job(job_file, retries=retries, merge=merge, scheduler=scheduler, scenes_in_flight=scenes_in_flight)
    # systemd and schedulers stop jobs with SIGTERM: finish like Ctrl-C (manifest written, exit 130)
    stop_on_sigterm()
    kwargs: dict[str, Any] = {"dry_run": dry_run}
    # another run of the job holding its lock: LockedError, exit EXIT_LOCKED (75) like every command
    # --log-json: progress over all scenes and the outputs also go to the log
    events = JsonProgress() if logs_json() and not dry_run else None

    def progress(event: str, info: dict[str, Any]) -> None:
        if bar is not None:
            bar.update(event, info)
        if events is None:
            return
        if event == "scene":
            events.scenes = info["total"]
            events.next_scene(info["done"], info["name"])
        elif event == "stage":
            events.update(info["stage"], info["done"], info["total"])

    bar: BatchProgress | None = None
    if quiet:
        result = run_batch(job, progress=progress, **kwargs)
    else:
        with BatchProgress(job.region) as bar:
            result = run_batch(job, progress=progress, **kwargs)
    if events:
        events.finish()
        log_result(
            {"manifest": result.manifest, "regional": result.regional},
            scenes={o.scene: o.status for o in result.scenes},
            failed=len(result.failed),
        )
    if not quiet:
        print_batch_summary(result, dry_run=dry_run)
    if result.failed:
        click.echo(
            f"Error: {len(result.failed)} of {len(result.scenes)} scenes failed ({', '.join(result.failed[:5])}"
            f"{', ...' if len(result.failed) > 5 else ''}); see {result.manifest}",
            err=True,
        )
        sys.exit(1)
