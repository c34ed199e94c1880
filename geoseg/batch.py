"""Regional mapping jobs: many scenes, one job file, unattended and resumable.

A job file (YAML) names the region, the scenes (globs, paths, URLs, text files
listing paths, or STAC sources), the model, the output folder and the settings of
``geoseg run``::

    region: harbour-east
    scenes: [ortho/2026-11/*.tif]
    model: demo
    output: maps/harbour-east
    run: {overlap: 64, preview: true}
    retries: 1
    merge: true

:func:`run_batch` maps every scene into ``<output>/scenes/``, skipping scenes
whose outputs are complete and current (same input checksum, model hash and
settings, read back from each scene's run report), resuming interrupted scenes
from their zarr stores, retrying unexpected failures and carrying on past
scenes that keep failing. It writes ``<output>/<region>.manifest.json`` after
every scene and, with ``merge``, the regional layer
``<output>/<region>.landcover.gpkg`` (see :mod:`geoseg.regional`). A lock file
in the output folder stops two runs of one job from overlapping; the operating
system releases it when its process ends, however it ends.

How scenes are scheduled (``scheduler:``, ``scenes_in_flight:``): with a local
scheduler (``threads``, the default) scenes are mapped here, one after another,
or two at a time in a two-stage pipeline (one segmenting while the one before
it is vectorised and exported); with ``local:N`` or ``tcp://HOST:PORT`` each
scene is one task on a Dask cluster that maps it whole on a worker, several
scenes at once (see :mod:`geoseg.batch_parallel`). Outputs are the same bytes
whichever way they are mapped.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import objects
from .config import OutDir, RunConfig, RunOptions, Scheduler, config_error
from .errors import ConfigError, GeosegError, GeosegIOError, JobLockedError
from .remote import display_name, is_remote, scene_name
from .stac import DEFAULT_MAX_ITEMS, SEARCH_KEYS, StacScene, stac_scenes, stac_search

if TYPE_CHECKING:
    from .export.report import RunReport
    from .regional import MergeResult

__all__ = [
    "BatchJob",
    "BatchResult",
    "SceneOutcome",
    "StacSource",
    "load_job",
    "run_batch",
    "scene_paths",
]

log = logging.getLogger(__name__)

#: Settings of ``geoseg run`` that change no output byte: a scene mapped with other values is still current.
_NEUTRAL = frozenset(
    {"scene", "model", "outdir", "name", "overwrite", "chunk", "scheduler", "workers", "keep_intermediate"}
)
_GLOB = frozenset("*?[")

#: A scene of a job: a local file, a URL or GDAL path, or a STAC item's asset (named after the item).
JobScene = Path | str | StacScene


class StacSource(BaseModel):
    """A ``scenes:`` entry: every item of a STAC ItemCollection, static catalog or STAC API search.

    ``{stac: PATH_OR_URL, asset: KEY}`` reads an ItemCollection, Catalog or
    Collection. Any search key (`collections`, `bbox`, `datetime`, `query`,
    `filter`, `max_items`) makes `stac` the URL of a STAC API to search instead:
    ``{stac: https://example.org/stac/v1, collections: [ortho], bbox: [w, s, e, n],
    datetime: 2026-06-01/2026-06-30}``. `asset` is the asset key to map; None takes
    ``visual``, else ``image``. `max_items` bounds a search (default 1000).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    stac: str = Field(min_length=1)
    asset: str | None = Field(default=None, min_length=1)
    collections: tuple[str, ...] | None = Field(default=None, min_length=1)
    bbox: tuple[float, float, float, float] | None = None
    datetime: str | None = Field(default=None, min_length=1)
    query: dict[str, Any] | None = None
    filter: dict[str, Any] | None = None
    max_items: int | None = Field(default=None, ge=1, le=1_000_000)

    @field_validator("collections", mode="before")
    @classmethod
    def _one_collection(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("datetime", mode="before")
    @classmethod
    def _date_text(cls, v: Any) -> Any:
        # YAML reads an unquoted 2026-06-01 as a date
        return v.isoformat() if hasattr(v, "isoformat") else v

    @field_validator("bbox")
    @classmethod
    def _bbox_order(cls, v: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        if v is not None and not (-90 <= v[1] <= v[3] <= 90 and -180 <= min(v[0], v[2]) <= max(v[0], v[2]) <= 180):
            raise ValueError("bbox must be [west, south, east, north] in degrees (south <= north)")
        return v

    @property
    def is_search(self) -> bool:
        """Whether `stac` is a STAC API to search (the entry names a search key)."""
        return self.max_items is not None or any(getattr(self, k) is not None for k in SEARCH_KEYS)

    def search_parameters(self) -> dict[str, Any]:
        """The search keys given, as the STAC API item search takes them."""
        values = self.model_dump(mode="json", include=set(SEARCH_KEYS), exclude_none=True)
        return {k: values[k] for k in SEARCH_KEYS if k in values}


class BatchJob(BaseModel):
    """A regional job, as read from its YAML file (relative paths are relative to that file).

    `scenes` entries are file paths, URLs, glob patterns (``tiles/*.tif``,
    ``**/*.tif``), ``.txt`` files listing one path per line (``#`` starts a
    comment) or :class:`StacSource` mappings (``{stac: items.json, asset: visual}``).
    `model` is a checkpoint path, an installed model name or a URL;
    None uses ``GEOSEG_MODEL`` or the default installed model. `retries` is how
    often a scene that failed unexpectedly is tried again (a scene that is
    unreadable or does not fit the model is not retried: it would fail the same
    way); a cluster worker lost while mapping a scene counts as such a failure.

    `scheduler` is where scenes are mapped: ``threads``, ``processes`` or
    ``synchronous`` map them in this process (the scheduler of each scene's
    blocks; `workers` is its thread or process count), ``local:N`` (``local``:
    `workers`, else one per core) on a cluster of N worker processes started
    here, ``tcp://HOST:PORT`` on a running Dask cluster; on a cluster each scene
    is one task. `scenes_in_flight` bounds how many scenes are mapped at once:
    on a cluster it defaults to the number of workers; with a local scheduler
    it is 1 (one after another) or 2 (one scene segments while the one before
    it is vectorised and exported), default 1.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    region: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    scenes: tuple[str | StacSource, ...] = Field(min_length=1)
    output: OutDir
    model: str | None = None
    run: RunOptions = RunOptions()
    scheduler: Scheduler = "threads"
    workers: int | None = Field(default=None, ge=1)
    scenes_in_flight: int | None = Field(default=None, ge=1)
    retries: int = Field(default=1, ge=0, le=20)
    merge: bool = True
    base: Path = Field(default=Path("."), exclude=True, description="folder relative paths start from")

    @field_validator("scenes", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        entries = [v] if isinstance(v, str | dict) else v
        if not isinstance(entries, list | tuple):
            return entries
        out = []
        for entry in entries:  # a mapping is a STAC source: its own errors, not the union's
            if isinstance(entry, dict):
                try:
                    entry = StacSource(**entry)
                except ValidationError as exc:
                    raise ValueError(str(config_error(exc)).removeprefix("invalid ")) from None
            out.append(entry)
        return out

    @field_validator("region", mode="before")
    @classmethod
    def _region_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v

    def path(self, p: str | Path) -> Path:
        """`p` resolved against the job file's folder."""
        return (self.base / Path(p).expanduser()).resolve()

    @property
    def remote(self) -> bool:
        """Whether the outputs go to an ``s3://`` prefix rather than a local folder."""
        return objects.is_remote_dir(self.output)

    @property
    def outdir(self) -> Path | str:
        """The output folder: a resolved local path, or the ``s3://bucket/prefix`` URL."""
        return objects.join(str(self.output)) if self.remote else self.path(self.output)

    def out(self, name: str) -> Path | str:
        """Where `name` goes in the output folder (a path, or an object's URL)."""
        return objects.join(str(self.outdir), name) if self.remote else Path(self.outdir) / name

    @property
    def manifest_path(self) -> Path | str:
        return self.out(f"{self.region}.manifest.json")

    @property
    def regional_path(self) -> Path | str:
        return self.out(f"{self.region}.landcover.gpkg")

    @property
    def on_cluster(self) -> bool:
        """Whether scenes are tasks on a Dask cluster (``local:N``, ``tcp://``) rather than mapped here."""
        return self.scheduler.startswith(("local", "tcp://", "tls://"))

    def run_config(self, scene: JobScene, model: Path) -> RunConfig:
        """The :class:`RunConfig` of one scene of this job (a STAC scene's outputs carry its item id).

        On a cluster a scene's blocks run on its worker's threads: the scheduler is
        ``threads`` and `workers` is left to the cluster (see :mod:`geoseg.batch_parallel`).
        """
        return RunConfig.build(
            scene=_href(scene),
            model=model,
            outdir=self.out("scenes"),
            name=scene.name if isinstance(scene, StacScene) else None,
            overwrite=True,
            scheduler="threads" if self.on_cluster else self.scheduler,
            workers=None if self.on_cluster else self.workers,
            **self.run.model_dump(),
        )


def load_job(path: str | os.PathLike[str], **overrides: Any) -> BatchJob:
    """Read and validate a job file; `overrides` replace its top-level keys.

    Raises
    ------
    ConfigError
        The file is missing, is not YAML, or a key or value is wrong; the one-line
        message names the key.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"job file {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"cannot read job file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path.name} is not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name} must be a mapping of keys (region, scenes, output, ...)")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        job = BatchJob(**data, base=path.resolve().parent)
    except ValidationError as exc:
        err = config_error(exc)
        raise ConfigError(f"{path.name}: {str(err).removeprefix('invalid ')}") from None
    return job


def scene_paths(job: BatchJob) -> list[JobScene]:
    """The job's scenes in order, without duplicates.

    URLs, ``s3://`` keys and ``/vsi…`` paths (in the job or in a list file)
    are kept as the strings given; globs match local files only. Each item of
    a STAC source (or found by its STAC API search) is a
    :class:`~geoseg.stac.StacScene` named after its id.

    Raises
    ------
    ConfigError
        A glob or list matches nothing, a list file is missing, a STAC source
        cannot be read or searched, a search finds nothing, an item lacks the
        asset, or two scenes share a name (their outputs would collide).
    """
    return _gather(job)[0]


def _gather(job: BatchJob) -> tuple[list[JobScene], list[dict[str, Any]]]:
    """:func:`scene_paths`, and the record of each STAC API search it ran (for the manifest)."""
    found: list[JobScene] = []
    searches: list[dict[str, Any]] = []
    for entry in job.scenes:
        if isinstance(entry, StacSource) and entry.is_search:
            result = stac_search(
                entry.stac, entry.search_parameters(), entry.asset, entry.max_items or DEFAULT_MAX_ITEMS
            )
            found += result.scenes
            searches.append(result.record)
        elif isinstance(entry, StacSource):
            source = entry.stac if is_remote(entry.stac) else str(job.path(entry.stac))
            found += stac_scenes(source, entry.asset)
        elif is_remote(entry):
            found.append(entry)
        elif _GLOB & set(entry):
            pattern = str(job.path(entry)) if not Path(entry).is_absolute() else entry
            hits = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            if not hits:
                raise ConfigError(f"scenes: {entry!r} matches no file")
            found += hits
        elif entry.lower().endswith((".txt", ".lst")):
            listing = job.path(entry)
            try:
                lines = listing.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ConfigError(f"scenes: cannot read list {listing}: {exc.strerror or exc}") from None
            items = [ln.split("#", 1)[0].strip() for ln in lines]
            found += [i if is_remote(i) else (listing.parent / Path(i).expanduser()).resolve() for i in items if i]
        else:
            found.append(job.path(entry))  # a missing file fails as that scene, not the job
    unique = list(dict.fromkeys(found))
    if not unique:
        raise ConfigError("scenes: the job lists no scene")
    stems: dict[str, JobScene] = {}
    for p in unique:
        stem = _stem(p)
        if stem in stems:
            raise ConfigError(
                f"scenes {display_name(_href(stems[stem]))} and {display_name(_href(p))} share the name {stem!r}; "
                "their outputs would collide"
            )
        stems[stem] = p
    return unique, searches


def _href(scene: JobScene) -> Path | str:
    """Where the scene is read from."""
    return scene.href if isinstance(scene, StacScene) else scene


def _stem(scene: JobScene) -> str:
    """The scene's name: a STAC item's id, else its file name without the suffix (a URL's without the query)."""
    return scene.name if isinstance(scene, StacScene) else Path(scene_name(scene)).stem


def _present(scene: JobScene) -> bool:
    """Whether a local scene is a file; remote scenes are asked for when they are mapped."""
    href = _href(scene)
    return is_remote(href) or Path(href).is_file()


Status = Literal["done", "skipped", "failed", "interrupted", "pending"]


@dataclass
class SceneOutcome:
    """What happened to one scene in a batch run."""

    scene: str
    path: str
    status: Status = "pending"
    attempts: int = 0
    seconds: float = 0.0
    error: str | None = None
    started: str | None = None
    finished: str | None = None
    resumed_blocks: int = 0
    polygons: int = 0
    class_areas_m2: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("done", "skipped")


@dataclass
class BatchResult:
    """The outcome of :func:`run_batch`."""

    region: str
    scenes: list[SceneOutcome]
    manifest: Path | str
    regional: Path | str | None
    seconds: float
    regional_features: int | None = None

    @property
    def failed(self) -> list[str]:
        return [s.scene for s in self.scenes if s.status == "failed"]


#: progress(event, info): events "scene" (a scene starts: name, index, total, and done: scenes finished so
#: far), "stage" (stage, done, total, as geoseg run reports them; none from a cluster), "outcome" (a
#: SceneOutcome, with index, total and done) and "merge" (scenes, done 0 or 1).
BatchProgress = Callable[[str, dict[str, Any]], None]


def _current(report_path: Path | str, cfg: RunConfig, checksum: str, model_sha: str) -> RunReport | None:
    """The scene's run report if its outputs are complete and made from this input, model and settings."""
    from .export.report import read_report

    report = read_report(report_path)
    if report is None:
        return None
    same = (
        report.scene.checksum == checksum
        and report.model.sha256 == model_sha
        and _settings(report.parameters) == _settings(cfg.model_dump(mode="json"))
    )
    wanted = {"classes", "landcover"} | {k for k in ("confidence", "preview") if getattr(cfg, k)}
    outputs = report.outputs
    if same and wanted <= set(outputs) and all(_readable(k, p) for k, p in outputs.items()):
        return report
    return None


def _readable(kind: str, where: str) -> bool:
    """Whether an output exists and opens: a short or damaged file makes its scene run again, not 'skipped'.

    An ``s3://`` output need only exist: objects appear there only complete.
    """
    if objects.is_remote_dir(where):
        return objects.exists(where)
    path = Path(where)
    if not path.is_file():
        return False
    try:
        if path.suffix == ".tif":
            import rasterio
            from rasterio.windows import Window

            with rasterio.open(path) as ds:  # its last block lies at the end of the file (COG layout)
                ds.read(1, window=Window(ds.width - 1, ds.height - 1, 1, 1))
        elif path.suffix == ".gpkg":
            import pyogrio

            pyogrio.read_info(path, layer="landcover")
    except Exception:
        log.info("%s output %s does not open; the scene runs again", kind, path)
        return False
    return True


def _settings(parameters: dict[str, Any]) -> dict[str, Any]:
    # a setting a report predates (engine, say) had its default then: the scene need not be mapped again
    defaults = {k: f.default for k, f in RunOptions.model_fields.items()}
    return {k: v for k, v in (defaults | parameters).items() if k not in _NEUTRAL}


def _outcome_from_report(outcome: SceneOutcome, report: RunReport, report_path: Path | str) -> None:
    outcome.polygons = report.polygons
    outcome.class_areas_m2 = report.class_areas
    outcome.outputs = {**report.outputs, "report": str(report_path)}
    outcome.resumed_blocks = report.grid.resumed_blocks


def run_batch(
    job: BatchJob,
    *,
    progress: BatchProgress | None = None,
    dry_run: bool = False,
) -> BatchResult:
    """Map every scene of `job`, then merge the regional layer.

    Parameters
    ----------
    job : BatchJob
        See :func:`load_job`; its `scheduler` and `scenes_in_flight` say where
        and how many scenes are mapped at once.
    progress : callable, optional
        ``progress(event, info)``, see :data:`BatchProgress`.
    dry_run : bool
        Only work out which scenes would run, which are current and which are
        missing; map nothing and write nothing.

    Returns
    -------
    BatchResult
        Failed scenes are listed in ``result.failed``; the job does not raise for them.

    Raises
    ------
    JobLockedError
        Another run of this job is in progress.
    ConfigError, GeosegIOError
        The job cannot start (no scenes, no model, output folder not writable,
        no Dask scheduler at the address).
    KeyboardInterrupt
        After the manifest has recorded the interrupted scenes.
    """
    from ._files import sha256_file
    from ._lock import hold
    from .models import resolve_model

    t_start = time.perf_counter()
    scenes, searches = _gather(job)
    model = resolve_model(job.model).resolve()
    outdir = job.outdir
    if job.remote:
        objects.list_objects(str(job.out("scenes")))  # a missing bucket or refused credentials: one line, now
    elif not dry_run:
        assert isinstance(outdir, Path)
        try:
            (outdir / "scenes").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GeosegIOError(f"cannot create output folder {outdir}: {exc.strerror or exc}") from None
        if not os.access(outdir, os.W_OK):
            raise GeosegIOError(f"output folder {outdir} is not writable")
    with contextlib.ExitStack() as held:
        if not dry_run:
            busy, lock = f"job {job.region!r} is already running", job.out(f".{job.region}.lock")
            if job.remote:
                from ._remote_lock import hold_object

                held.enter_context(hold_object(str(lock), busy, error=JobLockedError))
            else:
                held.enter_context(hold(lock, busy, error=JobLockedError))
        mhash = sha256_file(model)  # the model's identity, as run.json records it
        outcomes = [SceneOutcome(scene=_stem(p), path=display_name(_href(p))) for p in scenes]
        started = datetime.now(UTC).isoformat(timespec="seconds")

        def save(regional: Path | str | None = None, features: int | None = None) -> None:
            if not dry_run:
                _write_manifest(
                    job, outcomes, searches, model, mhash, started, regional, features, time.perf_counter() - t_start
                )

        book = Book(outcomes, progress, save)
        todo = _todo(job, scenes, book, model, mhash, dry_run)
        merge: Merge | None = None
        if dry_run:
            ran = any(True for _ in todo)
        elif job.on_cluster:
            from .batch_parallel import cluster, on_cluster, ship_model

            client, threads, workers = held.enter_context(cluster(job))
            shipped = ship_model(client, model, mhash)
            ran = on_cluster(job, todo, book, client, threads, job.scenes_in_flight or workers, shipped)
            merge = partial(_merge_on, client, job.retries)
        elif (job.scenes_in_flight or 1) > 1:
            from .batch_parallel import overlapped

            ran = overlapped(job, todo, book)
        else:
            ran = False
            for i, cfg in todo:
                _map_scene(job, cfg, book, i)
                ran = True
        regional, features = None, None
        good = [(p, o) for p, o in zip(scenes, outcomes, strict=True) if o.ok]
        if job.merge and good and not dry_run:
            regional, features = _merge_if_needed(job, good, ran, progress, merge)
        save(regional, features)
        return BatchResult(job.region, outcomes, job.manifest_path, regional, time.perf_counter() - t_start, features)


class Book:
    """The scenes' outcomes as they arrive: progress events, the outcome log line and the manifest."""

    def __init__(self, outcomes: list[SceneOutcome], progress: BatchProgress | None, save: Callable[[], None]):
        self.outcomes, self.progress, self.save = outcomes, progress, save
        self.done = 0

    def start(self, i: int) -> None:
        """Scene `i` is planned (and then mapped, unless it is current)."""
        if self.progress:
            info = {"name": self.outcomes[i].scene, "index": i, "total": len(self.outcomes), "done": self.done}
            self.progress("scene", info)

    def stage(self, name: str, done: int, total: int) -> None:
        """A stage of a scene mapped here moved on."""
        if self.progress:
            self.progress("stage", {"stage": name, "done": done, "total": total})

    def finish(self, i: int, *, mapped: bool = True) -> None:
        """Scene `i` has its final outcome: log it (if it was `mapped`), write the manifest, report progress."""
        outcome = self.outcomes[i]
        if mapped:
            # outcomes are INFO for every status: the terminal shows them as progress lines, log files keep them all
            log.info(
                "%s: %s in %.1f s%s",
                outcome.scene,
                outcome.status,
                outcome.seconds,
                f": {outcome.error}" if outcome.error else "",
                extra={
                    "event": "scene",
                    "scene": outcome.scene,
                    "status": outcome.status,
                    "seconds": outcome.seconds,
                    "attempts": outcome.attempts,
                },
            )
            self.save()
        self.done += 1
        if self.progress:
            self.progress("outcome", {"outcome": outcome, "index": i, "total": len(self.outcomes), "done": self.done})

    def retrying(self, i: int, error: str, traceback_text: str | None, retries: int) -> None:
        """Attempt ``outcomes[i].attempts`` of scene `i` failed unexpectedly; another follows."""
        outcome = self.outcomes[i]
        log.info(
            "%s: attempt %d of %d failed: %s",
            outcome.scene,
            outcome.attempts,
            retries + 1,
            error,
            extra={
                "event": "scene",
                "scene": outcome.scene,
                "status": "retry",
                "attempt": outcome.attempts,
                "traceback": traceback_text,
            },
        )


def _todo(
    job: BatchJob, scenes: list[JobScene], book: Book, model: Path, mhash: str, dry_run: bool
) -> Iterator[tuple[int, RunConfig]]:
    """The scenes to map, in the job's order, with their settings; current and unreadable ones are booked here."""
    for i, path in enumerate(scenes):
        book.start(i)
        cfg = _plan_scene(job, path, book.outcomes[i], model, mhash, dry_run)
        if cfg is None or dry_run:
            if book.outcomes[i].status == "failed" and not dry_run:
                book.save()
            book.finish(i, mapped=False)
            continue
        yield i, cfg


def _plan_scene(
    job: BatchJob, path: JobScene, outcome: SceneOutcome, model: Path, mhash: str, dry_run: bool
) -> RunConfig | None:
    """The scene's settings if it is to be mapped; None when it is current (skipped) or cannot be read (failed)."""
    from .pipeline import output_paths
    from .raster import file_checksum

    extra = {"event": "scene", "scene": outcome.scene}
    try:
        cfg = job.run_config(path, model)
        report_path = job.out(f"scenes/{output_paths(cfg.scene, Path(), cfg.name)['report'].name}")
        report = _current(report_path, cfg, file_checksum(cfg.scene), mhash) if _present(path) else None
    except (GeosegError, OSError) as exc:
        outcome.status, outcome.error = "failed", _one_line(exc)
        log.info("%s: failed: %s", outcome.scene, outcome.error, extra={**extra, "status": "failed"})
        return None
    if report is not None:
        outcome.status = "skipped"
        _outcome_from_report(outcome, report, report_path)
        log.info("%s: outputs are current, skipped", outcome.scene, extra={**extra, "status": "skipped"})
        return None
    if dry_run:
        outcome.status = "pending" if _present(path) else "failed"
        outcome.error = None if _present(path) else f"{display_name(_href(path))} not found"
    return cfg


def _map_scene(job: BatchJob, cfg: RunConfig, book: Book, i: int) -> None:
    """Map scene `i` here, trying again after unexpected failures, and book its outcome."""
    from .pipeline import run

    outcome = book.outcomes[i]
    t0 = time.perf_counter()
    outcome.started = now()
    for attempt in range(1, job.retries + 2):
        outcome.attempts = attempt
        try:
            result = run(cfg, progress=book.stage)
        except GeosegError as exc:  # the scene itself is wrong: another try fails the same way
            outcome.status, outcome.error = "failed", _one_line(exc)
            break
        except KeyboardInterrupt:
            interrupted(outcome, time.perf_counter() - t0)
            book.save()
            raise
        except Exception as exc:
            outcome.status, outcome.error = "failed", _one_line(exc)
            book.retrying(i, outcome.error, traceback.format_exc(), job.retries)
            continue
        outcome.status, outcome.error = "done", None
        _outcome_from_report(outcome, result.report, result.outputs["report"])
        break
    outcome.seconds = round(time.perf_counter() - t0, 3)
    outcome.finished = now()
    book.finish(i)


def interrupted(outcome: SceneOutcome, seconds: float) -> None:
    """Mark a scene that was being mapped when the job was stopped."""
    outcome.status, outcome.error = "interrupted", "interrupted; run the job again to resume"
    outcome.seconds = round(seconds, 3)


def now() -> str:
    """The time now, as the manifest records a scene's start and end (UTC, milliseconds)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    return msg if isinstance(exc, GeosegError) else f"{type(exc).__name__}: {msg}"


#: merge(layers, reports, target, names, run_info) -> MergeResult: where the regional merge runs.
Merge = Callable[[list[str], list[str], "Path | str", list[str], dict[str, Any]], "MergeResult"]


def _merge_here(
    layers: list[str], reports: list[str], target: Path | str, names: list[str], run_info: dict[str, Any]
) -> MergeResult:
    """Merge the scenes' layers into `target`; ``s3://`` inputs are fetched and an ``s3://`` target uploaded whole."""
    import tempfile

    from .regional import merge_layers

    if not objects.is_remote_dir(str(target)) and not any(objects.is_remote_dir(p) for p in layers + reports):
        return merge_layers(
            [Path(p) for p in layers], [Path(p) for p in reports], Path(target), names=names, run_info=run_info
        )
    with tempfile.TemporaryDirectory(prefix="geoseg-merge-") as tmp:
        local: list[list[Path]] = [[], []]
        for kind, places in enumerate((layers, reports)):
            for i, place in enumerate(places):
                if not objects.is_remote_dir(place):
                    local[kind].append(Path(place))
                    continue
                got = objects.read_bytes(place)
                if got is None:
                    raise GeosegIOError(f"{display_name(place)} is gone; run the job again to map its scene anew")
                path = Path(tmp, f"{kind}-{i}-{place.rsplit('/', 1)[1]}")
                path.write_bytes(got[0])
                local[kind].append(path)
        if not objects.is_remote_dir(str(target)):
            return merge_layers(local[0], local[1], Path(target), names=names, run_info=run_info)
        staged = Path(tmp, str(target).rsplit("/", 1)[1])
        merged = merge_layers(local[0], local[1], staged, names=names, run_info=run_info)
        objects.upload_file(staged, str(target))
        return merged


def _merge_on(
    client: Any,
    retries: int,
    layers: list[str],
    reports: list[str],
    target: Path | str,
    names: list[str],
    run_info: Any,
) -> MergeResult:
    """The regional merge as a task on a cluster worker, tried again like a scene after an unexpected failure."""
    for attempt in range(1, retries + 2):
        future = client.submit(_merge_here, layers, reports, target, names, run_info, pure=False)
        try:
            return future.result()
        except GeosegError:
            raise
        except Exception as exc:
            if attempt > retries:
                raise
            log.info("regional merge: attempt %d of %d failed: %s", attempt, retries + 1, _one_line(exc))
    raise AssertionError("unreachable")


def _merge_if_needed(
    job: BatchJob,
    good: list[tuple[JobScene, SceneOutcome]],
    ran: bool,
    progress: BatchProgress | None,
    merge: Merge | None = None,
) -> tuple[Path | str, int]:
    """Merge the regional layer unless it exists and holds exactly these scenes' current outputs."""
    names = [o.scene for _, o in good]
    target = job.regional_path
    previous = _read_manifest(job).get("regional") or {}
    if not ran and _exists(target) and previous.get("scenes") == names and previous.get("features") is not None:
        return target, int(previous["features"])
    if progress:
        progress("merge", {"scenes": len(good), "done": 0})
    t0 = time.perf_counter()
    layers, reports = _merge_inputs(good)
    merged = (merge or _merge_here)(layers, reports, target, names, {"region": job.region})
    if progress:
        progress("merge", {"scenes": len(good), "done": 1})
    log.info(
        "regional layer %s: %d features from %d scenes (%d merged across scene edges) in %.1f s",
        display_name(str(target)).rsplit("/", 1)[-1],
        merged.features,
        len(good),
        merged.joined,
        time.perf_counter() - t0,
        extra={"event": "merge", "features": merged.features, "joined": merged.joined},
    )
    return target, merged.features


def _merge_inputs(good: list[tuple[JobScene, SceneOutcome]]) -> tuple[list[str], list[str]]:
    """The land-cover layers and run reports the regional layer is merged from (paths or ``s3://`` URLs)."""
    return [o.outputs["landcover"] for _, o in good], [o.outputs["report"] for _, o in good]


def _exists(place: Path | str) -> bool:
    return objects.exists(place) if isinstance(place, str) else place.is_file()


def _read_manifest(job: BatchJob) -> dict[str, Any]:
    """The job's manifest as the last run left it; empty where there is none or it does not parse."""
    place = job.manifest_path
    try:
        if isinstance(place, str):
            got = objects.read_bytes(place)
            data = json.loads(got[0]) if got else {}
        else:
            data = json.loads(place.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_manifest(
    job: BatchJob,
    outcomes: list[SceneOutcome],
    searches: list[dict[str, Any]],
    model: Path,
    mhash: str,
    started: str,
    regional: Path | str | None,
    features: int | None,
    seconds: float,
) -> None:
    from . import __version__
    from ._files import write_json

    totals: dict[str, float] = {}
    for o in outcomes:
        for name, area in o.class_areas_m2.items():
            totals[name] = totals.get(name, 0.0) + area
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed", "interrupted", "pending")}
    manifest = {
        "region": job.region,
        "geoseg_version": __version__,
        "started": started,
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "model": {"path": str(model), "sha256": mhash},
        # presigned URLs carry their signature in the query: the manifest keeps scenes without it
        "settings": job.model_dump(mode="json") | {"scenes": [_shown(e) for e in job.scenes]},
        "counts": counts,
        "class_areas_m2": {k: round(v, 3) for k, v in totals.items()},
        "regional": None
        if regional is None
        else {"path": str(regional), "features": features, "scenes": [o.scene for o in outcomes if o.ok]},
        # what each STAC API search found this run: a later run may find other items
        "stac_searches": searches,
        "scenes": [asdict(o) for o in outcomes],
    }
    place = job.manifest_path
    if isinstance(place, str):  # one PUT: the object is replaced whole
        objects.write_bytes(place, (json.dumps(manifest, indent=2, default=str) + "\n").encode())
    else:
        write_json(manifest, place)


def _shown(entry: str | StacSource) -> str | dict[str, Any]:
    """A job's ``scenes:`` entry as the manifest keeps it: without a URL's query string."""
    if isinstance(entry, StacSource):
        return entry.model_dump(mode="json", exclude_none=True) | {"stac": display_name(entry.stac)}
    return display_name(entry)
