"""The steps of a run, each a function of small frozen records: prepare → segment → vectorize → export → report.

:func:`prepare` decides everything before a pixel is read (scene, model,
bands, grid, outputs, the store's fingerprint) and fails fast on bad input;
:func:`segment` fills the working store; :func:`vectorize` writes the
GeoPackage from it; :func:`export` writes the class COG (and the optional
rasters); :func:`report` writes ``run.json`` last and removes the store.
:func:`run` chains them.

Outputs go to a local folder, or to ``s3://bucket/prefix``
(:mod:`geoseg.objects`). There the working store is
``s3://bucket/prefix/<stem>.zarr``, written by the block tasks themselves;
the final files are written into a private local staging folder (removed
at the end, also on error) and each is uploaded as one complete object,
``run.json`` last, only once every output is written. So a final key holds
nothing, the previous object or the complete new one, and a prefix with a
store but no ``run.json`` is an interrupted run to finish. A lock object
(:mod:`geoseg._remote_lock`) keeps a second run, on any machine, away.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__, objects
from .._files import check_outdir, remove_stale_parts, sha256_file
from .._parallel import ProgressCallback, in_background, release_free_memory
from ..config import RunConfig, check_tile
from ..errors import ConfigError, OutputExistsError, SceneError
from ..raster import SceneInfo, file_checksum, has_valid_pixels, open_scene, select_bands
from ..remote import display_name, is_remote, scene_name
from ..store import WorkStore
from ..tiling import BlockPlan, TileGrid
from ..vectorize import ClassSource, Cleaning, VectorSummary, cells, vectorize_cells
from .blocks import Job, build_graph
from .scheduler import Runner

if TYPE_CHECKING:
    from ..export.report import RunReport
    from ..predict.runtime import EngineChoice
    from ..predict.spec import ModelSpec

__all__ = [
    "Exported",
    "Prepared",
    "RemoteOutputs",
    "RunResult",
    "Segmented",
    "Vectorized",
    "export",
    "output_paths",
    "prepare",
    "report",
    "run",
    "segment",
    "vectorize",
]

log = logging.getLogger(__name__)


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteOutputs:
    """Where the outputs of a run into ``s3://`` go: `prefix`, and the URL of every output, store and lock by key."""

    prefix: str
    urls: Mapping[str, str]


@dataclass(frozen=True)
class Prepared:
    """A run decided: everything :func:`prepare` checked and chose before a pixel is read."""

    cfg: RunConfig
    info: SceneInfo
    spec: ModelSpec
    bands: tuple[int, ...]
    fill: tuple[float, ...]
    grid: TileGrid
    plan: BlockPlan
    precision: str
    engine: EngineChoice
    paths: Mapping[str, Path]
    checksum: str
    model_sha256: str
    fingerprint: Mapping[str, Any]
    cleaning: Cleaning
    created: str
    started: float
    checksum_seconds: float
    remote: RemoteOutputs | None = None

    @property
    def scene_name(self) -> str:
        return scene_name(self.info.path)

    @property
    def store_location(self) -> str:
        """The working store: its folder, or its ``s3://`` URL for outputs in object storage."""
        return self.remote.urls["store"] if self.remote else str(self.paths["store"])


@dataclass(frozen=True)
class Segmented:
    """The working store holds every block's classes and confidence."""

    store: WorkStore
    resumed: int
    task_seconds: Mapping[str, float]
    seconds: float


@dataclass(frozen=True)
class Vectorized:
    """The GeoPackage is written; `summary` holds its counts and the class raster's areas."""

    path: Path
    summary: VectorSummary
    seconds: float


@dataclass(frozen=True)
class Exported:
    """The rasters written from the store (class COG, and confidence / preview when asked for)."""

    outputs: Mapping[str, Path]
    seconds: float


@dataclass
class RunResult:
    """What a run produced and measured; `outputs` are paths, or ``s3://`` URLs for outputs in object storage."""

    outputs: dict[str, Path | str]
    class_areas: dict[str, float]
    class_pixels: dict[str, int]
    n_polygons: int
    timings: dict[str, float]
    scene_pixels: int
    valid_pixels: int
    resumed_blocks: int
    report: RunReport

    @property
    def megapixels_per_second(self) -> float:
        return self.scene_pixels / 1e6 / max(self.timings.get("total", 0.0), 1e-9)


# -- the run ----------------------------------------------------------------------------------


def run(cfg: RunConfig, *, progress: ProgressCallback | None = None) -> RunResult:
    """Segment a scene and write its class raster, land-cover polygons and run report.

    Parameters
    ----------
    cfg : RunConfig
        The settings (see ``geoseg run --help``).
    progress : callable, optional
        Called as ``progress(stage, completed, total)`` while work proceeds.

    Returns
    -------
    RunResult

    Raises
    ------
    GeosegError
        For every problem with the inputs, the model or the output folder; no
        output file is left behind then.

    Notes
    -----
    Memory is bounded by the block size (``cfg.chunk``), not the scene: a
    block's input, its accumulator (4 bytes x classes per pixel) and a few
    blocks' partial results are in flight at once.
    """
    with contextlib.ExitStack() as cleanup:
        prep = prepare(cfg, cleanup)
        with Runner(cfg) as runner:
            seg = segment(prep, runner, cleanup, progress)
            vec = vectorize(prep, seg, runner, progress)
        out = export(prep, seg, vec)
        return report(prep, seg, vec, out, progress)


# -- steps ------------------------------------------------------------------------------------


def prepare(cfg: RunConfig, cleanup: contextlib.ExitStack) -> Prepared:
    """Open and check the scene and the model, choose bands, grid and blocks, and claim the outputs.

    Takes the output lock (released by `cleanup`), refuses existing outputs
    without ``--overwrite`` (unless an interrupted run left them), and
    removes what a killed run was writing. Raises a one-line
    :class:`~geoseg.errors.GeosegError` for every bad input.
    """
    started = time.perf_counter()
    info = open_scene(cfg.scene)
    name = scene_name(info.path)
    scene_checksum = in_background(file_checksum, info.path)  # hashing a big scene overlaps importing torch
    from ..predict.runtime import choose_engine, read_spec

    remote = cfg.scheduler.startswith(("tcp://", "tls://"))
    choice = choose_engine(cfg.model, engine=cfg.engine, device=cfg.device, precision=cfg.precision, remote=remote)
    spec = read_spec(choice.path)
    bands = select_bands(info, cfg.bands, spec.in_channels, spec.bands)
    if not has_valid_pixels(info):
        raise SceneError(f"{name} has no valid pixels (all nodata or masked); nothing to map")
    if spec.pixel_dtype and spec.pixel_dtype != info.dtype:
        log.warning(
            "scene is %s but the model was trained on %s imagery; check its normalisation", info.dtype, spec.pixel_dtype
        )
    tile = cfg.tile or spec.tile_size
    try:
        check_tile(tile)
    except ValueError as exc:
        raise ConfigError(f"the model's {exc}; pass --tile") from None
    try:
        grid = TileGrid(info.height, info.width, tile=tile, overlap=cfg.overlap)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    from ..predict.runtime import default_chunk

    plan = BlockPlan.from_chunk(grid, cfg.chunk or default_chunk(cfg.device))
    precision: str = choice.precision or cfg.precision
    if choice.engine == "torch" and not remote:
        from ..predict.engine import resolve_device, resolve_precision  # a cluster's workers resolve their own device

        precision = resolve_precision(resolve_device(cfg.device), cfg.precision)
    log.info("engine: %s %s (%s)", choice.engine, precision, choice.reason)

    remote_out: RemoteOutputs | None = None
    if objects.is_remote_dir(cfg.outdir):
        paths, remote_out = _claim_remote_outputs(cfg, info.path, cleanup)
    else:
        paths = _claim_outputs(cfg, info.path, cleanup)

    t0 = time.perf_counter()
    checksum = scene_checksum.result()
    mhash = choice.source_sha256
    checksum_seconds = time.perf_counter() - t0
    fill = _fill_values(spec.mean)
    fingerprint: dict[str, Any] = {
        "scene": checksum,
        "model": mhash,
        "bands": list(bands),
        "tile": tile,
        "overlap": cfg.overlap,
        "block": plan.block_size,
        "fill": list(fill),
        "precision": precision,
        "format": 1,
    }
    if cfg.compile:
        fingerprint["compile"] = True  # compiled kernels may differ in the last bit
    if choice.engine != "torch":  # a graph exported from the checkpoint gives other bits than torch
        fingerprint["engine"] = choice.engine
        if choice.path != Path(cfg.model):
            fingerprint["graph"] = sha256_file(choice.path)
    return Prepared(
        cfg=cfg,
        info=info,
        spec=spec,
        bands=bands,
        fill=fill,
        grid=grid,
        plan=plan,
        precision=precision,
        engine=choice,
        paths=paths,
        checksum=checksum,
        model_sha256=mhash,
        fingerprint=fingerprint,
        cleaning=Cleaning.resolve(cfg.min_area, cfg.simplify, info.mean_pixel_m),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        started=started,
        checksum_seconds=checksum_seconds,
        remote=remote_out,
    )


def segment(
    prep: Prepared, runner: Runner, cleanup: contextlib.ExitStack, progress: ProgressCallback | None = None
) -> Segmented:
    """Predict, blend and stitch every block not yet in the working store (resuming a matching one)."""
    cfg, plan = prep.cfg, prep.plan
    store, resumed = WorkStore.prepare(prep.store_location, plan, dict(prep.fingerprint), overwrite=cfg.overwrite)
    cleanup.push(_remove_store_on_error_if_empty(store))

    # One intra-op thread per CPU forward pass, one pass per Dask worker: the
    # bits of a convolution depend on its thread count, so fixing it makes the
    # result independent of scheduler and worker count.
    threads = 1
    # Concurrent forward passes per process: the cores this process is given.
    cores = os.cpu_count() or 1
    parallel = {
        "threads": cfg.workers or cores,
        "synchronous": cores,
        "processes": max(1, cores // (cfg.workers or cores)),
    }.get(cfg.scheduler, 1)  # cluster workers run one thread each
    scene = prep.info.path
    job = Job(
        scene=scene if is_remote(scene) else os.path.abspath(scene),  # workers may run in folders of their own
        bands=prep.bands,
        fill=prep.fill,
        plan=plan,
        checkpoint=str(prep.engine.path.resolve()),
        device=cfg.device,
        precision=prep.precision,
        compile=cfg.compile,
        batch=cfg.batch,
        threads=threads,
        parallel=parallel,
        store=store.location,
        num_classes=prep.spec.num_classes,
    )
    t0 = time.perf_counter()
    seconds: Counter[str] = Counter()
    dsk, keys = build_graph(job, store)
    for r in runner.compute(dsk, keys, {"segment": len(plan)}, progress):
        seconds.update(r.seconds)
    from ..predict.runtime import release_predictors

    release_predictors()  # threads and synchronous runs hold the model here; the vector stage needs the memory
    release_free_memory()
    return Segmented(store, resumed, dict(seconds), time.perf_counter() - t0)


def vectorize(prep: Prepared, seg: Segmented, runner: Runner, progress: ProgressCallback | None = None) -> Vectorized:
    """Clean the stored class raster into land-cover polygons and write the GeoPackage."""
    from ..export import GeoPackageWriter

    t0 = time.perf_counter()
    store, spec, cleaning = seg.store, prep.spec, prep.cleaning
    store.check_complete(prep.plan)
    if cleaning.min_pixels > 0:
        store.ensure("cleaned", chunks=cells.VECTOR_CELL)
    source = ClassSource(store.location, "store", spec.num_classes)
    path = prep.paths["landcover"]
    with (
        runner.pool() as pool,
        GeoPackageWriter(path, crs=prep.info.crs_wkt, classes=spec.classes, runs=_run_row(prep)) as gpkg,
    ):
        summary = vectorize_cells(
            source, prep.info, cleaning, pool, gpkg, spec.classes, confidence=True, progress=progress
        )
        if summary.class_pixels.sum() == 0:
            store.remove()
            raise SceneError(f"{prep.scene_name} has no valid pixels (all nodata or masked); nothing to map")
    release_free_memory()
    return Vectorized(path, summary, time.perf_counter() - t0)


def export(prep: Prepared, seg: Segmented, vec: Vectorized) -> Exported:
    """Write the class COG (the cleaned raster when there is a mapping unit) and the optional outputs."""
    from ..export import write_class_cog, write_preview

    t0 = time.perf_counter()
    cfg, store, plan, info, classes = prep.cfg, seg.store, prep.plan, prep.info, prep.spec.classes
    source_array = "cleaned" if prep.cleaning.min_pixels > 0 else "classes"
    written = {"classes": write_class_cog(store, plan, info, prep.paths["classes"], classes, array=source_array)}
    if cfg.confidence:
        written["confidence"] = write_class_cog(
            store, plan, info, prep.paths["confidence"], classes, array="confidence"
        )
    if cfg.preview:
        written["preview"] = write_preview(info, written["classes"], prep.paths["preview"], classes)
    return Exported(written, time.perf_counter() - t0)


def report(
    prep: Prepared, seg: Segmented, vec: Vectorized, out: Exported, progress: ProgressCallback | None = None
) -> RunResult:
    """Write ``run.json`` (last: its presence means the run finished) and remove the working store."""
    from ..export.report import ClassRecord, CleaningRecord, GridRecord, ModelRecord, RunReport, SceneRecord

    cfg, info, spec, summary, cleaning = prep.cfg, prep.info, prep.spec, vec.summary, prep.cleaning
    timings = {
        "checksum": prep.checksum_seconds,
        "segment": seg.seconds,
        "vectorize": vec.seconds,
        "export": out.seconds,
        "total": time.perf_counter() - prep.started,
    }
    seconds = Counter(seg.task_seconds)
    seconds.update(summary.task_seconds)
    cpu: dict[str, float | int] = {k: round(v, 3) for k, v in seconds.items() if k != "tiles"}
    class_pixels = {c.name: int(summary.class_pixels[c.id]) for c in spec.classes}
    class_areas = {c.name: float(summary.class_areas[c.id]) for c in spec.classes}
    valid_pixels = int(summary.class_pixels.sum())
    written: dict[str, Path | str] = {"landcover": vec.path, **out.outputs}
    shown: dict[str, str] = {k: prep.remote.urls[k] if prep.remote else str(v) for k, v in written.items()}
    record = RunReport(
        geoseg_version=__version__,
        created=prep.created,
        scene=SceneRecord(
            path=display_name(info.path),
            checksum=prep.checksum,
            width=info.width,
            height=info.height,
            bands_used=list(prep.bands),
            dtype=info.dtype,
            crs=info.crs_name,
            transform=list(info.transform)[:6],
            pixel_size_m=list(info.pixel_size_m),
            mask=info.mask_kind,
        ),
        model=ModelRecord(
            path=str(Path(cfg.model).resolve()),
            sha256=prep.model_sha256,
            engine=prep.engine.engine,
            graph=None if prep.engine.path == Path(cfg.model) else str(prep.engine.path),
            name=spec.name,
            arch=spec.arch,
            encoder=spec.encoder,
            bands=list(spec.bands),
        ),
        parameters=_parameters(cfg),
        grid=GridRecord(
            tile=prep.grid.tile,
            overlap=cfg.overlap,
            stride=prep.grid.stride,
            tiles=list(prep.grid.shape),
            tiles_run=int(seconds.get("tiles", 0)),
            precision=prep.precision,
            block=prep.plan.block_size,
            blocks=list(prep.plan.shape),
            resumed_blocks=seg.resumed,
        ),
        timings_s={k: round(v, 3) for k, v in timings.items()},
        task_seconds=cpu,
        throughput_mpx_s=round(info.width * info.height / 1e6 / timings["total"], 4),
        area_method=summary.area_method,
        cleaning=CleaningRecord(
            min_area_m2=cleaning.min_area_m2, min_pixels=cleaning.min_pixels, simplify_m=cleaning.simplify_m
        ),
        polygons=summary.polygons,
        valid_pixels=valid_pixels,
        classes=[
            ClassRecord(
                id=c.id, name=c.name, color=c.hex, pixels=class_pixels[c.name], area_m2=round(class_areas[c.name], 3)
            )
            for c in spec.classes
        ],
        outputs=shown,
        versions=_versions(),
    )
    record.write(prep.paths["report"])
    written["report"] = prep.paths["report"]
    if prep.remote:
        written = _publish(prep, written)
    if not cfg.keep_intermediate:
        seg.store.remove()
    else:
        written["store"] = seg.store.url or seg.store.path
    if progress:
        progress("export", 1, 1)
    return RunResult(
        written,
        class_areas,
        class_pixels,
        summary.polygons,
        timings,
        info.width * info.height,
        valid_pixels,
        seg.resumed,
        record,
    )


# -- helpers ----------------------------------------------------------------------------------


def output_paths(scene: str | os.PathLike[str], outdir: Path, name: str | None = None) -> dict[str, Path]:
    """The files a run writes for `scene` (a path, URL or GDAL path) into `outdir`.

    Their stem is `name` where given, else the scene's file name, for a URL the
    last part of its path without the query string, less a raster suffix.

    Examples
    --------
    >>> output_paths("https://example.org/tiles/scene.tif?token=x", Path("out"))["classes"]
    PosixPath('out/scene.classes.tif')
    >>> output_paths("https://example.org/S2A_33UUP_20260601/visual.tif", Path("out"), "S2A_33UUP_20260601")["report"]
    PosixPath('out/S2A_33UUP_20260601.run.json')
    """
    if name is not None:
        stem = name
    else:
        file = scene_name(scene)
        suffix = Path(file).suffix.lower()
        stem = file.rsplit(".", 1)[0] if suffix in (".tif", ".tiff", ".vrt", ".img", ".jp2") else file
    return {
        "classes": outdir / f"{stem}.classes.tif",
        "landcover": outdir / f"{stem}.landcover.gpkg",
        "confidence": outdir / f"{stem}.confidence.tif",
        "report": outdir / f"{stem}.run.json",
        "preview": outdir / f"{stem}.preview.png",
        "store": outdir / f"{stem}.zarr",
        "lock": outdir / f".{stem}.lock",
    }


def _claim_outputs(cfg: RunConfig, scene: str, cleanup: contextlib.ExitStack) -> dict[str, Path]:
    """Create the output folder, lock the scene's outputs in it, and refuse or clear what is there.

    Without an output folder, outputs go next to a local scene, and into the
    working directory for a remote one.
    """
    from .._lock import hold
    from ..export import class_sidecars

    outdir = (Path(cfg.outdir) if cfg.outdir else Path.cwd() if is_remote(scene) else Path(scene).parent).resolve()
    paths = output_paths(scene, outdir, cfg.name)
    name = scene_name(scene)
    if not outdir.exists():
        cleanup.push(_remove_if_empty_on_error(outdir))
    check_outdir(outdir)
    cleanup.enter_context(
        hold(paths["lock"], f"another geoseg run is writing {name} into {outdir}; wait for it to finish")
    )
    wanted = ["classes", "landcover", "report"] + [k for k in ("confidence", "preview") if getattr(cfg, k)]
    existing = [paths[k].name for k in wanted if paths[k].exists()]
    existing += [p.name for p in class_sidecars(paths["classes"]) if p.exists()]
    # A working store without a run report is a run that was killed while exporting: finish it.
    interrupted = paths["store"].exists() and not paths["report"].exists()
    if existing and not cfg.overwrite and not interrupted:
        raise OutputExistsError(f"{', '.join(existing)} already exist(s) in {outdir}; pass --overwrite to replace")
    for key in ("classes", "landcover", "report", "confidence", "preview"):
        remove_stale_parts(paths[key])  # what a killed run was writing
    return paths


def _claim_remote_outputs(
    cfg: RunConfig, scene: str, cleanup: contextlib.ExitStack
) -> tuple[dict[str, Path], RemoteOutputs]:
    """Lock the scene's outputs under an ``s3://`` prefix, refuse or accept what is there, and stage locally.

    The same rules as :func:`_claim_outputs`: existing final objects are
    refused without ``--overwrite``, unless a working store without
    ``run.json`` shows an interrupted run (which this one finishes). The
    files are written into a private staging folder, removed when the run
    ends, and uploaded from there by :func:`_publish`.
    """
    from .._remote_lock import hold_object
    from ..export import class_sidecars

    prefix = objects.join(str(cfg.outdir))
    names = output_paths(scene, Path(), cfg.name)
    sidecars = {f"classes:{p.name}": p.name for p in class_sidecars(names["classes"])}
    urls = {k: objects.join(prefix, p.name) for k, p in names.items()}
    urls |= {k: objects.join(prefix, n) for k, n in sidecars.items()}
    name, shown = scene_name(scene), display_name(prefix)
    cleanup.enter_context(
        hold_object(urls["lock"], f"another geoseg run is writing {name} into {shown}; wait for it to finish")
    )
    present = set(objects.list_objects(prefix))
    wanted = ["classes", *sidecars, "landcover", "report"] + [k for k in ("confidence", "preview") if getattr(cfg, k)]
    existing = [urls[k].rsplit("/", 1)[1] for k in wanted if urls[k] in present]
    interrupted = urls["report"] not in present and any(u.startswith(urls["store"] + "/") for u in present)
    if existing and not cfg.overwrite and not interrupted:
        raise OutputExistsError(f"{', '.join(existing)} already exist(s) in {shown}; pass --overwrite to replace")
    _remove_dead_staging()
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING}{os.getpid()}-"))
    cleanup.callback(shutil.rmtree, staging, ignore_errors=True)
    return output_paths(scene, staging, cfg.name), RemoteOutputs(prefix, urls)


#: Staging folders are named ``geoseg-out-<pid>-<random>`` in the temporary folder.
_STAGING = "geoseg-out-"


def _remove_dead_staging() -> None:
    """Remove the staging folders of runs that were killed (their PID is not alive), which nothing else removes."""
    import psutil

    for folder in Path(tempfile.gettempdir()).glob(f"{_STAGING}*-*"):
        pid = folder.name.removeprefix(_STAGING).split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _publish(prep: Prepared, written: Mapping[str, Path | str]) -> dict[str, Path | str]:
    """Upload the staged outputs, each as one complete object, ``run.json`` last; their URLs by key."""
    from ..export import class_sidecars

    assert prep.remote is not None
    urls = prep.remote.urls
    files: list[tuple[Path, str]] = []
    for key, path in written.items():
        if key == "report":
            continue
        files.append((Path(path), urls[key]))
        if key == "classes":
            files += [(p, urls[f"classes:{p.name}"]) for p in class_sidecars(path)]
    files.append((Path(written["report"]), urls["report"]))  # last: its presence means the run finished
    for path, url in files:
        objects.upload_file(path, url)
        log.info("uploaded %s", display_name(url))
    return {key: urls[key] for key in written}


def _parameters(cfg: RunConfig) -> dict[str, Any]:
    """The run's settings as reports record them: a remote scene without its query string or credentials."""
    params = cfg.model_dump(mode="json")
    if is_remote(cfg.scene):
        params["scene"] = display_name(cfg.scene)
    return params


def _run_row(prep: Prepared) -> dict[str, Any]:
    """The row the GeoPackage's ``runs`` table gets."""
    return {
        "created": prep.created,
        "geoseg_version": __version__,
        "scene": display_name(prep.info.path),
        "scene_checksum": prep.checksum,
        "model": prep.spec.name,
        "model_sha256": prep.model_sha256,
        "parameters": _parameters(prep.cfg),
    }


def _remove_if_empty_on_error(folder: Path) -> Callable[..., bool]:
    """An exit callback: remove `folder` (created by this run) if the run failed before writing into it."""

    def callback(et: type[BaseException] | None, *_: object) -> bool:
        if et is not None:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when empty
        return False

    return callback


def _remove_store_on_error_if_empty(store: WorkStore) -> Callable[..., bool]:
    """An exit callback: a failed run whose store holds no finished block leaves no store behind."""

    def callback(et: type[BaseException] | None, *_: object) -> bool:
        if et is not None:
            try:
                empty = not store.done_blocks()
            except Exception:  # removed or damaged: nothing to resume from either
                try:
                    empty = not store.exists()
                except Exception:  # an object store out of reach: the run's own error says so
                    return False
            if empty:
                with contextlib.suppress(Exception):
                    store.remove()
        return False

    return callback


def _fill_values(spec_mean: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(m) for m in spec_mean)


def _versions() -> dict[str, str]:
    out = {"geoseg": __version__, "python": platform.python_version()}
    for pkg in ("torch", "segmentation-models-pytorch", "rasterio", "dask", "zarr", "shapely", "pyogrio"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    import rasterio

    out["gdal"] = rasterio.__gdal_version__
    return out
