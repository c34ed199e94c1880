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

Vectorisation then streams over a fixed grid of cells
(:data:`~geoseg.vectorize.cells.VECTOR_CELL`) read from the store: workers
polygonise, clean and finish each cell; the calling process merges pieces
across cell edges row by row and appends features to the GeoPackage as they
complete (:func:`~geoseg.vectorize.vectorize_cells`). Last,
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
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from ._failpoints import failpoint
from ._files import check_outdir
from ._parallel import BlockPool, ClientPool, Pool, ProgressCallback, Timed, in_background, release_free_memory
from .config import RunConfig, check_tile
from .errors import ConfigError, GeosegIOError, OutputExistsError, SceneError
from .raster import file_checksum, has_valid_pixels, open_scene, read_window, select_bands
from .stitch import BlockPartial, accumulate, finish_block, make_partial, tile_weights
from .store import WorkStore
from .tiling import BlockPlan, Rect, TileGrid
from .vectorize import ClassSource, Cleaning, cells, vectorize_cells

if TYPE_CHECKING:
    from .export.report import RunReport

__all__ = [
    "Job",
    "RunResult",
    "output_paths",
    "run",
]

log = logging.getLogger(__name__)


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
    check_outdir(outdir)
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
            store.ensure("cleaned", chunks=cells.VECTOR_CELL)
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
