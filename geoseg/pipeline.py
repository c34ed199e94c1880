"""Chain the stages and run them.

Segmentation is one Dask graph; for every block of the plan (see :mod:`geoseg.tiling`)::

    predict-Y-X    read the block's extent by path, run its tiles, blend  -> BlockPartial
    own-Y-X        the partial without the parts of its edge pieces outside its core
    edges-Y-X-V-U  the pieces of block (Y, X)'s partial that block (V, U) needs
    stitch-Y-X     add the neighbours' edge contributions, write zarr    <- own, 8 edges

Each intermediate result has one consumer: Dask frees a block's whole
partial as soon as its own and edge parts are cut out of it (right after the
prediction), the own part once the block is stitched and each edge part once
the neighbour it is for is: what waits for the next row of blocks is a
block's core classes and the thin bands along its edges.

Vectorisation then streams over a fixed grid of cells (:data:`VECTOR_CELL`)
read from the store: workers polygonise, clean and finish each cell; the
calling process merges pieces across cell edges row by row and appends
features to the GeoPackage as they complete (:func:`vectorize_cells`). Last,
the class COG is written from the store. Workers receive paths and small
settings objects, never open datasets or models; each worker process loads
the model once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from . import __version__
from ._failpoints import failpoint
from ._parallel import BlockPool, ClientPool, Pool, imap, in_background, release_free_memory
from .classes import ISPRS, NODATA, ClassTable
from .config import RunConfig, check_tile
from .errors import ConfigError, GeosegIOError, OutputExistsError, SceneError
from .raster import SceneInfo, file_checksum, has_valid_pixels, open_scene, read_window, select_bands
from .stitch import BlockPartial, accumulate, finish_block, make_partial, tile_weights
from .store import WorkStore
from .tiling import BlockPlan, Rect, TileGrid
from .vectorize import (
    Features,
    Georef,
    SeamMerger,
    apply_sieve,
    area_method,
    clean_block,
    polygonize_block,
    sieve,
    split_block,
)

if TYPE_CHECKING:
    from .export import GeoPackageWriter
    from .export.report import RunReport

__all__ = [
    "VECTOR_CELL",
    "ClassSource",
    "Cleaning",
    "Job",
    "RunResult",
    "VectorizeResult",
    "output_paths",
    "run",
    "vectorize_cells",
    "vectorize_raster",
]

log = logging.getLogger(__name__)

#: progress(stage, completed, total); stages: "segment", "vectorize", "export".
ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Job:
    """Everything a block task needs; small and picklable."""

    scene: str
    bands: tuple[int, ...]
    fill: tuple[float, ...]
    plan: BlockPlan
    checkpoint: str
    device: str
    precision: str
    batch: int | None
    threads: int | None
    parallel: int
    store: str
    num_classes: int
    compile: bool = False


# -- block tasks ------------------------------------------------------------------------------


@dataclass
class Timed:
    """A task result with the seconds it spent per stage."""

    value: Any
    seconds: dict[str, float] = field(default_factory=dict)


def predict_block(job: Job, by: int, bx: int) -> Timed:
    """Read a block with its halo, predict its tiles, blend them: a :class:`BlockPartial`."""
    from .predict.engine import get_predictor, worker_device  # torch is imported in the worker only

    plan, grid = job.plan, job.plan.grid
    block = plan.block(by, bx)
    ext = block.extent
    t0 = time.perf_counter()
    data, valid = read_window(job.scene, ext.row0, ext.col0, ext.height, ext.width, job.bands, fill=job.fill)
    t1 = time.perf_counter()
    predictor = get_predictor(
        job.checkpoint,
        device=worker_device(job.device),
        batch_size=job.batch,
        precision=job.precision,
        threads=job.threads,
        compile=job.compile,
    )
    weights = tile_weights(grid.tile, grid.overlap)
    acc = np.zeros((job.num_classes, ext.height, ext.width), dtype=np.int32)
    # Tiles whose whole extent is nodata influence no valid pixel: skip them.
    todo = [t for t in block.tiles() if valid[grid.tile_extent(*t).slices(ext)].any()]
    rects = [grid.tile_extent(*t) for t in todo]
    bs = predictor.batch_size
    groups = [rects[i : i + bs] for i in range(0, len(rects), bs)]
    stacks = (np.stack([data[(slice(None), *r.slices(ext))] for r in g]) for g in groups)
    blend = 0.0
    ta = time.perf_counter()
    for group, probs in zip(groups, predictor.stream(stacks, parallel=job.parallel), strict=True):
        tb = time.perf_counter()
        for rect, p in zip(group, probs, strict=True):
            if not np.isfinite(p).all():  # cast to fixed point, NaN would blank the tile without a word
                raise SceneError(
                    f"the model gave NaN or infinite probabilities for the tile at rows {rect.row0}..{rect.row1 - 1}, "
                    f"cols {rect.col0}..{rect.col1 - 1} (precision {job.precision}); try --precision fp32"
                )
            accumulate(acc, ext, p, weights, rect)
        blend += time.perf_counter() - tb
    forward = time.perf_counter() - ta - blend
    tc = time.perf_counter()
    partial = make_partial(plan, block, acc, valid[block.core.slices(ext)])
    blend += time.perf_counter() - tc
    return Timed(partial, {"read": t1 - t0, "predict": forward, "blend": blend, "tiles": float(len(todo))})


def own_part(job: Job, by: int, bx: int, own: Timed) -> Timed:
    """A block's partial trimmed to what finishing it needs."""
    partial: BlockPartial = own.value
    return Timed(partial.trimmed(job.plan.block(by, bx).core), own.seconds)


def edges_toward(job: Job, by: int, bx: int, own: Timed) -> list[tuple[Rect, np.ndarray]]:
    """The pieces of a block's partial that block ``(by, bx)`` needs."""
    partial: BlockPartial = own.value
    return partial.toward(job.plan.block(by, bx).core)


def stitch_block(job: Job, by: int, bx: int, own: Timed, neighbours: Sequence[list[tuple[Rect, np.ndarray]]]) -> Timed:
    """Finish a block from its own partial and its neighbours' edge pieces and write it to the store."""
    t0 = time.perf_counter()
    partial: BlockPartial = own.value
    cls, conf = finish_block(job.plan, partial, neighbours)
    WorkStore(job.store).write_block(job.plan.block(by, bx), cls, conf)
    failpoint("segment")
    return Timed(None, {"stitch": time.perf_counter() - t0, **own.seconds})


#: Features gathered before one append to the GeoPackage (one append costs a file open and close).
_WRITE_BATCH = 10_000

#: The fixed grid (pixels, anchored at the scene origin) on which polygons are built, simplified
#: and cleaned, then merged exactly across cell edges. It never changes with the chunk size,
#: workers or scheduler, so neither do the polygons.
VECTOR_CELL = 2048


@dataclass(frozen=True)
class ClassSource:
    """Where a vectorisation reads classes: a run's work store, or a class GeoTIFF."""

    path: str
    kind: Literal["store", "raster"]
    num_classes: int

    def classes(self, core: Rect) -> np.ndarray:
        if self.kind == "store":
            return WorkStore(self.path).read(core, "classes")
        data, valid = read_window(self.path, core.row0, core.col0, core.height, core.width, (1,))
        cls = np.where(valid, data[0], NODATA).astype(np.uint8)
        bad = (cls != NODATA) & (cls >= self.num_classes)
        if bad.any():
            raise SceneError(
                f"{Path(self.path).name} holds value {int(cls[bad].max())}, which is no class id "
                f"(0..{self.num_classes - 1}) and not nodata ({NODATA})"
            )
        return cls

    def confidence(self, core: Rect) -> np.ndarray | None:
        return WorkStore(self.path).read(core, "confidence") if self.kind == "store" else None

    def keep_cleaned(self, core: Rect, classes: np.ndarray) -> None:
        """Store a cell's sieved classes (they become the class raster)."""
        if self.kind == "store":
            WorkStore(self.path).write(core, classes, "cleaned")


@dataclass(frozen=True)
class CellTask:
    """Polygonise one vector cell: ``task((index, lut))``; picklable, for worker processes.

    ``regions_only`` gives just the region statistics and adjacency (the
    sieve's input). Otherwise the cell is relabelled with its `lut` from
    :func:`~geoseg.vectorize.sieve` (if any), polygonised, and cleaned
    (:func:`~geoseg.vectorize.clean_block`); the result is the pieces on the
    cell's edges, left for the seam merge, the polygons inside it,
    finished as features (moved to the CRS, measured, encoded), and the
    pixel count and ground area of every class in the (cleaned) cell, from
    the raster itself (:meth:`~geoseg.vectorize.Georef.class_totals`).
    """

    source: ClassSource
    cells: BlockPlan
    georef: Georef | None = None
    simplify_pixels: float = 0.0
    min_pixels: float = 0.0
    regions_only: bool = False

    def __call__(self, item: tuple[tuple[int, int], np.ndarray | None]) -> Timed:
        index, lut = item
        t0 = time.perf_counter()
        core = self.cells.block(*index).core
        cls = self.source.classes(core)
        if self.regions_only:
            regions = polygonize_block(cls, None, core, index, geometry=False, adjacency=True)
            return Timed(regions, {"regions": time.perf_counter() - t0})
        failpoint("vectorize")
        if lut is not None:
            cls = apply_sieve(cls, lut)
            self.source.keep_cleaned(core, cls)
        polys = polygonize_block(cls, self.source.confidence(core), core, index)
        polys = clean_block(polys, self.simplify_pixels, self.min_pixels)
        assert self.georef is not None
        totals = self.georef.class_totals(cls, core, self.source.num_classes)
        pieces, inside = split_block(polys)
        return Timed((pieces, self.georef.finish(inside), totals), {"vectorize": time.perf_counter() - t0})


# -- scheduling -------------------------------------------------------------------------------


_STAGES = {"stitch": "segment"}


class _Progress:
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


class _Runner:
    """Runs task graphs on the configured scheduler; holds a distributed client when there is one."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.client: Any = None
        self.cluster: Any = None

    def __enter__(self) -> _Runner:
        sched = self.cfg.scheduler
        if sched.startswith(("tcp://", "tls://", "local")):
            from distributed import Client, LocalCluster

            if sched.startswith("local"):
                from .predict.engine import local_workers

                n = int(sched.split(":")[1]) if ":" in sched else (self.cfg.workers or local_workers(self.cfg.device))
                from ._lifeline import PRELOAD

                self.cluster = LocalCluster(
                    n_workers=n,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    preload=[PRELOAD],  # nannies and workers end with this process, however it ends
                    preload_nanny=[PRELOAD],
                )
                self.client = Client(self.cluster)
            else:
                try:
                    self.client = Client(sched, timeout="20s")
                except OSError as exc:
                    raise GeosegIOError(f"cannot reach the Dask scheduler at {sched} ({exc}); is it running?") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    @contextlib.contextmanager
    def pool(self) -> Iterator[Pool]:
        """Workers for the vector cells: the cluster's, or processes here (this process when synchronous)."""
        if self.client is not None:
            yield ClientPool(self.client)
            return
        n = 1 if self.cfg.scheduler == "synchronous" else (self.cfg.workers or os.cpu_count() or 1)
        with BlockPool(n) as pool:
            yield pool

    def compute(
        self, dsk: dict[str, Any], keys: list[str], totals: dict[str, int], progress: ProgressCallback | None
    ) -> list[Any]:
        """The results of `keys` in the task graph `dsk`, reporting finished tasks to `progress`."""
        counter = _Progress(totals, progress)
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
                return list(dask.threaded.get(dsk, keys, num_workers=self.cfg.workers))
            from functools import partial

            from ._lifeline import bind_to_parent

            bind = partial(bind_to_parent, os.getpid())
            return list(dask.multiprocessing.get(dsk, keys, num_workers=self.cfg.workers, initializer=bind))


# -- the run ----------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What a run produced and measured."""

    outputs: dict[str, Path]
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


def output_paths(scene: Path, outdir: Path) -> dict[str, Path]:
    """The files a run writes for `scene` into `outdir`."""
    stem = (
        scene.name.rsplit(".", 1)[0]
        if scene.suffix.lower() in (".tif", ".tiff", ".vrt", ".img", ".jp2")
        else scene.name
    )
    return {
        "classes": outdir / f"{stem}.classes.tif",
        "landcover": outdir / f"{stem}.landcover.gpkg",
        "confidence": outdir / f"{stem}.confidence.tif",
        "report": outdir / f"{stem}.run.json",
        "preview": outdir / f"{stem}.preview.png",
        "store": outdir / f"{stem}.zarr",
        "lock": outdir / f".{stem}.lock",
    }


def _check_outdir(outdir: Path) -> None:
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        probe = outdir / f".geoseg-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise GeosegIOError(
            f"cannot write to output folder {outdir} ({exc.strerror or exc}); pass -o with a writable folder"
        ) from exc


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
                empty = not store.path.exists()
            if empty:
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
        return _run(cfg, progress, cleanup)


def _run(cfg: RunConfig, progress: ProgressCallback | None, cleanup: contextlib.ExitStack) -> RunResult:
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    info = open_scene(cfg.scene)
    scene_path = Path(info.path)
    scene_checksum = in_background(file_checksum, info.path)  # hashing a big scene overlaps importing torch
    from .predict.checkpoint import model_hash, read_spec

    spec = read_spec(cfg.model)
    bands = select_bands(info, cfg.bands, spec.in_channels, spec.bands)
    if not has_valid_pixels(info):
        raise SceneError(f"{scene_path.name} has no valid pixels (all nodata or masked); nothing to map")
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
    from .predict.engine import default_chunk

    plan = BlockPlan.from_chunk(grid, cfg.chunk or default_chunk(cfg.device))
    precision: str = cfg.precision
    if not cfg.scheduler.startswith(("tcp://", "tls://")):  # a cluster's workers resolve their own device
        from .predict.engine import resolve_device, resolve_precision

        precision = resolve_precision(resolve_device(cfg.device), cfg.precision)

    outdir = (cfg.outdir or scene_path.parent).resolve()
    paths = output_paths(scene_path, outdir)
    if not outdir.exists():
        cleanup.push(_remove_if_empty_on_error(outdir))
    _check_outdir(outdir)
    from ._lock import hold

    cleanup.enter_context(
        hold(paths["lock"], f"another geoseg run is writing {scene_path.name} into {outdir}; wait for it to finish")
    )
    from .export import class_sidecars

    wanted = ["classes", "landcover", "report"] + [k for k in ("confidence", "preview") if getattr(cfg, k)]
    existing = [paths[k].name for k in wanted if paths[k].exists()]
    existing += [p.name for p in class_sidecars(paths["classes"]) if p.exists()]
    # A working store without a run report is a run that was killed while exporting: finish it.
    interrupted = paths["store"].exists() and not paths["report"].exists()
    if existing and not cfg.overwrite and not interrupted:
        raise OutputExistsError(f"{', '.join(existing)} already exist(s) in {outdir}; pass --overwrite to replace")
    from ._files import remove_stale_parts

    for key in ("classes", "landcover", "report", "confidence", "preview"):
        remove_stale_parts(paths[key])  # what a killed run was writing

    t0 = time.perf_counter()
    checksum = scene_checksum.result()
    mhash = model_hash(cfg.model)
    timings["checksum"] = time.perf_counter() - t0
    fill = _fill_values(spec.mean)
    fingerprint = {
        "scene": checksum,
        "model": mhash,
        "bands": list(bands),
        "tile": tile,
        "overlap": cfg.overlap,
        "block": plan.block_size,
        "fill": list(fill),
        "precision": precision,
        "format": 1,
    } | ({"compile": True} if cfg.compile else {})  # compiled kernels may differ in the last bit
    store, resumed = WorkStore.prepare(paths["store"], plan, fingerprint, overwrite=cfg.overwrite)
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
    job = Job(
        scene=info.path,
        bands=bands,
        fill=fill,
        plan=plan,
        checkpoint=str(Path(cfg.model).resolve()),
        device=cfg.device,
        precision=precision,
        compile=cfg.compile,
        batch=cfg.batch,
        threads=threads,
        parallel=parallel,
        store=str(store.path),
        num_classes=spec.num_classes,
    )
    cleaning = Cleaning.resolve(cfg.min_area, cfg.simplify, info.mean_pixel_m)
    stage_seconds: Counter[str] = Counter()
    created = datetime.now(UTC).isoformat(timespec="seconds")
    run_row = {
        "created": created,
        "geoseg_version": __version__,
        "scene": info.path,
        "scene_checksum": checksum,
        "model": spec.name,
        "model_sha256": mhash,
        "parameters": cfg.model_dump(mode="json"),
    }
    from .export import GeoPackageWriter, write_class_cog

    written: dict[str, Path] = {}
    with _Runner(cfg) as runner:
        t0 = time.perf_counter()
        dsk, keys = _graph(job, store)
        for r in runner.compute(dsk, keys, {"segment": len(plan)}, progress):
            stage_seconds.update(r.seconds)
        timings["segment"] = time.perf_counter() - t0
        release_free_memory()
        t0 = time.perf_counter()
        store.check_complete(plan)
        if cleaning.min_pixels > 0:
            store.ensure("cleaned", chunks=VECTOR_CELL)
        source = ClassSource(str(store.path), "store", spec.num_classes)
        with (
            runner.pool() as pool,
            GeoPackageWriter(paths["landcover"], crs=info.crs_wkt, classes=spec.classes, runs=run_row) as gpkg,
        ):
            vec = vectorize_cells(source, info, cleaning, pool, gpkg, spec.classes, confidence=True, progress=progress)
            if vec.class_pixels.sum() == 0:
                store.remove()
                raise SceneError(f"{scene_path.name} has no valid pixels (all nodata or masked); nothing to map")
        written["landcover"] = paths["landcover"]
        stage_seconds.update(vec.task_seconds)
        timings["vectorize"] = time.perf_counter() - t0
        release_free_memory()
    counts, method = vec.class_pixels, vec.area_method
    valid_pixels = int(counts.sum())

    t0 = time.perf_counter()
    source_array = "cleaned" if cleaning.min_pixels > 0 else "classes"
    written["classes"] = write_class_cog(store, plan, info, paths["classes"], spec.classes, array=source_array)
    if cfg.confidence:
        written["confidence"] = write_class_cog(
            store, plan, info, paths["confidence"], spec.classes, array="confidence"
        )
    if cfg.preview:
        from .export import write_preview

        written["preview"] = write_preview(info, written["classes"], paths["preview"], spec.classes)
    timings["export"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    cpu: dict[str, float | int] = {k: round(v, 3) for k, v in stage_seconds.items() if k != "tiles"}

    class_pixels = {c.name: int(counts[c.id]) for c in spec.classes}
    class_areas = {c.name: float(vec.class_areas[c.id]) for c in spec.classes}
    from .export.report import ClassRecord, CleaningRecord, GridRecord, ModelRecord, RunReport, SceneRecord

    report = RunReport(
        geoseg_version=__version__,
        created=created,
        scene=SceneRecord(
            path=info.path,
            checksum=checksum,
            width=info.width,
            height=info.height,
            bands_used=list(bands),
            dtype=info.dtype,
            crs=info.crs_name,
            transform=list(info.transform)[:6],
            pixel_size_m=list(info.pixel_size_m),
            mask=info.mask_kind,
        ),
        model=ModelRecord(
            path=str(Path(cfg.model).resolve()),
            sha256=mhash,
            name=spec.name,
            arch=spec.arch,
            encoder=spec.encoder,
            bands=list(spec.bands),
        ),
        parameters=cfg.model_dump(mode="json"),
        grid=GridRecord(
            tile=tile,
            overlap=cfg.overlap,
            stride=grid.stride,
            tiles=list(grid.shape),
            tiles_run=int(stage_seconds.get("tiles", 0)),
            precision=precision,
            block=plan.block_size,
            blocks=list(plan.shape),
            resumed_blocks=resumed,
        ),
        timings_s={k: round(v, 3) for k, v in timings.items()},
        task_seconds=cpu,
        throughput_mpx_s=round(info.width * info.height / 1e6 / timings["total"], 4),
        area_method=method,
        cleaning=CleaningRecord(
            min_area_m2=cleaning.min_area_m2, min_pixels=cleaning.min_pixels, simplify_m=cleaning.simplify_m
        ),
        polygons=vec.polygons,
        valid_pixels=valid_pixels,
        classes=[
            ClassRecord(
                id=c.id, name=c.name, color=c.hex, pixels=class_pixels[c.name], area_m2=round(class_areas[c.name], 3)
            )
            for c in spec.classes
        ],
        outputs={k: str(v) for k, v in written.items()},
        versions=_versions(),
    )
    report.write(paths["report"])
    written["report"] = paths["report"]
    if not cfg.keep_intermediate:
        store.remove()
    else:
        written["store"] = store.path
    if progress:
        progress("export", 1, 1)
    return RunResult(
        written,
        class_areas,
        class_pixels,
        vec.polygons,
        timings,
        info.width * info.height,
        valid_pixels,
        resumed,
        report,
    )


@dataclass(frozen=True)
class Cleaning:
    """Polygon cleaning in effect: minimum mapping unit and simplification tolerance."""

    min_area_m2: float
    simplify_m: float
    pixel_m: float

    #: Defaults, in pixels of the scene: regions under 16 pixels merge into a neighbour,
    #: boundaries simplify by one pixel (staircases become straight edges).
    DEFAULT_MIN_PIXELS = 16
    DEFAULT_SIMPLIFY_PIXELS = 1.0

    @classmethod
    def resolve(cls, min_area: float | None, simplify_m: float | None, pixel_m: float) -> Cleaning:
        """Settings in metres; None means the default for the scene's pixel size."""
        if min_area is None:
            min_area = cls.DEFAULT_MIN_PIXELS * pixel_m * pixel_m
        if simplify_m is None:
            simplify_m = cls.DEFAULT_SIMPLIFY_PIXELS * pixel_m
        return cls(float(min_area), float(simplify_m), pixel_m)

    @property
    def min_pixels(self) -> float:
        return self.min_area_m2 / (self.pixel_m * self.pixel_m)

    @property
    def simplify_pixels(self) -> float:
        return self.simplify_m / self.pixel_m


@dataclass
class VectorSummary:
    """What :func:`vectorize_cells` wrote and measured.

    ``class_pixels`` and ``class_areas`` (m²) are the class raster's own, the
    cleaned map when there is a mapping unit: what the class COG holds, and
    what the exact polygons' ``area_m2`` add up to. ``polygon_areas`` sums
    the written polygons' ``area_m2`` per class: after simplification, within
    :data:`~geoseg.vectorize.MAX_AREA_CHANGE` of ``class_areas``.
    """

    polygons: int
    class_pixels: np.ndarray
    class_areas: np.ndarray
    area_method: str
    task_seconds: Counter[str]
    polygon_areas: np.ndarray


def vectorize_cells(
    source: ClassSource,
    info: SceneInfo,
    cleaning: Cleaning,
    pool: Pool,
    out: GeoPackageWriter,
    classes: ClassTable,
    *,
    confidence: bool = False,
    progress: ProgressCallback | None = None,
) -> VectorSummary:
    """Polygonise a class raster cell by cell into `out`, merging across cell edges as rows complete.

    Cells are polygonised, cleaned and, inside, finished in `pool`, a few
    cells ahead of the merge. Polygons inside a cell are appended to the
    GeoPackage as they arrive (in batches); pieces on cell edges wait for
    their row of cells, and the regions a row completes are appended then.
    Class pixel counts and areas are summed from the cells' rasters, not the
    polygons (see :class:`VectorSummary`).

    Notes
    -----
    Memory holds a few cells' results (two per worker), up to
    ``_WRITE_BATCH`` features waiting for their append, one row of cells'
    edge pieces and the regions still open across it; not the scene. The sieve (``cleaning.min_pixels``)
    first gathers a few numbers per region of the whole scene (its region
    graph), but no geometry.
    """
    cells = BlockPlan(TileGrid(info.height, info.width, tile=VECTOR_CELL, overlap=0), 1)
    ny, nx = cells.shape
    indices = [b.index for b in cells.blocks()]
    window = 2 * pool.workers
    seconds: Counter[str] = Counter()

    def reporter(stage: str) -> Callable[[int], None] | None:
        return (lambda done: progress(stage, done, len(indices))) if progress else None

    def timed(results: Iterator[Timed]) -> Iterator[Any]:
        for r in results:
            seconds.update(r.seconds)
            yield r.value

    cx, cy = info.transform @ (info.width / 2, info.height / 2)
    georef = Georef(info.transform, info.crs_wkt, area_method(info.crs, cx, cy))
    luts: dict[tuple[int, int], np.ndarray] = {}
    if cleaning.min_pixels > 0:
        task = CellTask(source, cells, regions_only=True)
        regions = timed(imap(pool, task, [(i, None) for i in indices], window=window, report=reporter("clean")))
        luts = sieve(dict(zip(indices, regions, strict=True)), cleaning.min_pixels)
    task = CellTask(source, cells, georef, cleaning.simplify_pixels, cleaning.min_pixels)
    items = [(i, luts.pop(i, None)) for i in indices]
    results = timed(imap(pool, task, items, window=window, report=reporter("vectorize")))

    names = np.array(classes.names, dtype=object)
    pixels = np.zeros(len(classes), np.int64)
    areas = np.zeros(len(classes))
    polygon_areas = np.zeros(len(classes))

    buffered: list[Features] = []

    def write(batch: list[Features]) -> None:
        f = Features.concat(batch).canonical()
        fields = {
            "class_id": f.classes.astype(np.int32),
            "class_name": names[f.classes.astype(np.intp)],
            "area_m2": f.area_m2,
            "perimeter_m": f.perimeter_m,
        }
        if confidence:
            fields["mean_confidence"] = np.round(f.mean_confidence, 4)
        out.write(f.wkb, fields)
        np.add.at(polygon_areas, f.classes.astype(np.intp), f.area_m2)

    def add(features: Features, *, flush: bool = False) -> None:
        buffered.append(features)
        if flush or sum(map(len, buffered)) >= _WRITE_BATCH:
            write(buffered)
            buffered.clear()

    merger = SeamMerger()
    for by in range(ny):
        row = []
        for _ in range(nx):
            pieces, inside, (cell_pixels, cell_areas) = next(results)
            add(inside)  # final: written now, only the edge pieces wait for the row
            row.append(pieces)
            pixels += cell_pixels
            areas += cell_areas
        # Cleaning shaves no region below the mapping unit (clean_block), so one a row completes is final.
        add(georef.finish(merger.add_row(row, last=by == ny - 1)), flush=by == ny - 1)
    log.debug("merged %d regions cut by cell edges", merger.merged)
    return VectorSummary(out.features, pixels, areas, georef.method, seconds, polygon_areas)


def _graph(job: Job, store: WorkStore) -> tuple[dict[str, Any], list[str]]:
    """The task graph for the blocks not yet in the store (and the neighbours they need), and its outputs.

    A plain dictionary of tasks, built in time and memory proportional to
    the number of blocks, in row order. Dask's static ordering then advances
    down the scene row by row, so at most about two rows of blocks wait for
    their neighbours (tested). Built from nested ``dask.delayed`` objects,
    the same graph took memory quadratic in the number of blocks (127 MB for
    19 x 19 blocks) and was ordered interior first, holding every border
    block's partial until the end (63 blocks waiting instead of 38).
    """
    plan = job.plan
    ny, nx = plan.shape
    done = store.done_blocks()
    todo = {b.index for b in plan.blocks() if b.index not in done}
    need_predict = set(todo)
    for idx in todo:
        need_predict.update(plan.neighbours(*idx))
    dsk: dict[str, Any] = {}
    keys: list[str] = []
    for y in range(ny + 1):
        for x in range(nx):
            if (y, x) in need_predict:
                dsk[f"predict-{y}-{x}"] = (predict_block, job, y, x)
        for x in range(nx):  # the row above: its neighbours' predicts all exist now
            if (y - 1, x) not in todo:
                continue
            by, bx = y - 1, x
            dsk[f"own-{by}-{bx}"] = (own_part, job, by, bx, f"predict-{by}-{bx}")
            edges = []
            for sy, sx in plan.neighbours(by, bx):
                key = f"edges-{sy}-{sx}-{by}-{bx}"
                dsk[key] = (edges_toward, job, by, bx, f"predict-{sy}-{sx}")
                edges.append(key)
            dsk[f"stitch-{by}-{bx}"] = (stitch_block, job, by, bx, f"own-{by}-{bx}", edges)
            keys.append(f"stitch-{by}-{bx}")
    return dsk, keys


@dataclass
class VectorizeResult:
    """What :func:`vectorize_raster` wrote and measured.

    ``class_areas`` (m²) are the cleaned class raster's (pixel count times
    pixel area on the ground); ``polygon_areas`` sum the polygons' ``area_m2``,
    within 0.5 % of them per class after simplification.
    """

    path: Path
    n_polygons: int
    class_areas: dict[str, float]
    timings: dict[str, float]
    cleaning: Cleaning
    polygon_areas: dict[str, float] = field(default_factory=dict)


def vectorize_raster(
    classes_path: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    min_area: float | None = None,
    simplify: float | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    classes: ClassTable = ISPRS,
    progress: ProgressCallback | None = None,
) -> VectorizeResult:
    """Polygonise an existing class raster (uint8 class ids, 255 = nodata) into a styled GeoPackage.

    The same cell-parallel vectorisation, exact seam merge and cleaning as
    :func:`run`, for re-cleaning a map or vectorising one made elsewhere.
    Cells are read straight from the raster and polygonised in `workers`
    processes (default: one per core). `out` defaults to
    ``<stem>.landcover.gpkg`` beside the raster (a ``.classes`` suffix of the
    stem is dropped).

    Raises
    ------
    SceneError
        The raster is not a single-band uint8 class raster of `classes`.
    OutputExistsError
        `out` exists and `overwrite` is False.
    """
    from .export import GeoPackageWriter

    t_start = time.perf_counter()
    info = open_scene(classes_path)
    src = Path(info.path)
    if info.count != 1 or info.dtype != "uint8":
        raise SceneError(
            f"{src.name} has {info.count} band(s) of {info.dtype}; a class raster has one uint8 band of class ids"
        )
    stem = src.name.split(".")[0] if src.name.count(".") else src.stem
    out_path = Path(out) if out else src.with_name(f"{stem}.landcover.gpkg")
    _check_outdir(out_path.parent.resolve())
    if out_path.exists() and not overwrite:
        raise OutputExistsError(f"{out_path} already exists; pass --overwrite to replace it")
    cleaning = Cleaning.resolve(min_area, simplify, info.mean_pixel_m)
    row = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "geoseg_version": __version__,
        "scene": info.path,
        "parameters": {"min_area_m2": cleaning.min_area_m2, "simplify_m": cleaning.simplify_m},
    }
    source = ClassSource(info.path, "raster", len(classes))
    with (
        BlockPool(workers or os.cpu_count() or 1) as pool,
        GeoPackageWriter(out_path, crs=info.crs_wkt, classes=classes, runs=row) as gpkg,
    ):
        summary = vectorize_cells(source, info, cleaning, pool, gpkg, classes, progress=progress)
    timings: dict[str, float] = {k: round(v, 3) for k, v in summary.task_seconds.items()}
    timings["total"] = time.perf_counter() - t_start
    areas = {c.name: float(summary.class_areas[c.id]) for c in classes}
    polygon_areas = {c.name: float(summary.polygon_areas[c.id]) for c in classes}
    return VectorizeResult(out_path, summary.polygons, areas, timings, cleaning, polygon_areas)
