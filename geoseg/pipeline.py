"""Chain the stages into one Dask graph and run it.

For every block of the plan (see :mod:`geoseg.tiling`)::

    predict-Y-X    read the block's extent by path, run its tiles, blend  -> BlockPartial
    stitch-Y-X     add the neighbours' edge contributions, write zarr    <- predict of the 3x3 blocks
    vectorize-Y-X  polygonise the finished block                         <- stitch-Y-X

then, in the calling process: merge polygons across block edges, clean,
measure, and export. Workers receive paths and small settings objects, never
open datasets or models; each worker process loads the model once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._parallel import BlockPool
from .classes import ISPRS, ClassTable
from .config import RunConfig
from .errors import ConfigError, GeosegIOError, OutputExistsError, SceneError
from .raster import SceneInfo, file_checksum, has_valid_pixels, open_scene, read_window, select_bands
from .stitch import BlockPartial, accumulate, finish_block, make_partial, tile_weights
from .store import WorkStore
from .tiling import BlockPlan, TileGrid
from .vectorize import (
    BlockPolygons,
    Polygons,
    absorb_small,
    apply_sieve,
    measure,
    merge_blocks,
    polygonize_block,
    raster_block_polygons,
    sieve,
    simplify,
    to_crs,
)

__all__ = ["Cleaning", "Job", "RunResult", "VectorizeResult", "output_paths", "run", "vectorize_raster"]

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
    batch: int | None
    threads: int | None
    parallel: int
    store: str
    num_classes: int


# -- block tasks ------------------------------------------------------------------------------


@dataclass
class Timed:
    """A task result with the seconds it spent per stage."""

    value: Any
    seconds: dict[str, float] = field(default_factory=dict)


def predict_block(job: Job, by: int, bx: int) -> Timed:
    """Read a block with its halo, predict its tiles, blend them: a :class:`BlockPartial`."""
    from .predict.engine import get_predictor  # torch is imported in the worker, not at import time

    plan, grid = job.plan, job.plan.grid
    block = plan.block(by, bx)
    ext = block.extent
    t0 = time.perf_counter()
    data, valid = read_window(job.scene, ext.row0, ext.col0, ext.height, ext.width, job.bands, fill=job.fill)
    t1 = time.perf_counter()
    predictor = get_predictor(job.checkpoint, device=job.device, batch_size=job.batch, threads=job.threads)
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
            accumulate(acc, ext, p, weights, rect)
        blend += time.perf_counter() - tb
    forward = time.perf_counter() - ta - blend
    tc = time.perf_counter()
    partial = make_partial(plan, block, acc, valid[block.core.slices(ext)])
    blend += time.perf_counter() - tc
    return Timed(partial, {"read": t1 - t0, "predict": forward, "blend": blend, "tiles": float(len(todo))})


def stitch_block(job: Job, by: int, bx: int, own: Timed, neighbours: Sequence[Timed]) -> Timed:
    """Finish a block from its own and its neighbours' partials and write it to the store."""
    t0 = time.perf_counter()
    partial: BlockPartial = own.value
    cls, conf = finish_block(job.plan, partial, [n.value for n in neighbours])
    WorkStore(job.store).write_block(job.plan.block(by, bx), cls, conf)
    return Timed(None, {"stitch": time.perf_counter() - t0, **own.seconds})


def vectorize_block(
    job: Job,
    by: int,
    bx: int,
    _after: Timed | None = None,
    *,
    regions_only: bool = False,
    lut: np.ndarray | None = None,
) -> Timed:
    """Polygonise one finished block from the store.

    ``regions_only`` returns just the region statistics and adjacency (the
    sieve's input); with a `lut` from :func:`~geoseg.vectorize.sieve` the
    block is relabelled first and written to the store's ``cleaned`` array.
    """
    t0 = time.perf_counter()
    store = WorkStore(job.store)
    core = job.plan.block(by, bx).core
    cls = store.read(core, "classes")
    if regions_only:
        regions = polygonize_block(cls, None, core, (by, bx), geometry=False, adjacency=True)
        return Timed(regions, {"regions": time.perf_counter() - t0})
    if lut is not None:
        cls = apply_sieve(cls, lut)
        store.write(core, cls, "cleaned")
    conf = store.read(core, "confidence")
    polys = polygonize_block(cls, conf, core, (by, bx))
    return Timed(polys, {"vectorize": time.perf_counter() - t0})


# -- scheduling -------------------------------------------------------------------------------


_STAGES = {"stitch": "segment", "regions": "clean", "vectorize": "vectorize"}


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
                n = int(sched.split(":")[1]) if ":" in sched else (self.cfg.workers or os.cpu_count() or 1)
                self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
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

    def compute(self, outputs: list[Any], totals: dict[str, int], progress: ProgressCallback | None) -> list[Any]:
        counter = _Progress(totals, progress)
        if self.client is not None:
            from distributed import as_completed

            futures = self.client.compute(outputs)
            for fut in as_completed(futures):
                counter.step(fut.key)
            return [f.result() for f in futures]
        kwargs: dict[str, Any] = {"scheduler": self.cfg.scheduler}
        if self.cfg.workers and self.cfg.scheduler in ("threads", "processes"):
            kwargs["num_workers"] = self.cfg.workers
        import dask

        with counter.callback():
            return list(dask.compute(*outputs, **kwargs))


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
    report: dict[str, Any]

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
    from .predict.checkpoint import model_hash, read_spec

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    info = open_scene(cfg.scene)
    scene_path = Path(info.path)
    spec = read_spec(cfg.model)
    bands = select_bands(info, cfg.bands, spec.in_channels, spec.bands)
    if not has_valid_pixels(info):
        raise SceneError(f"{scene_path.name} has no valid pixels (all nodata or masked); nothing to map")
    if spec.pixel_dtype and spec.pixel_dtype != info.dtype:
        log.warning(
            "scene is %s but the model was trained on %s imagery; check its normalisation", info.dtype, spec.pixel_dtype
        )
    tile = cfg.tile or spec.tile_size
    if tile % 32:
        raise ConfigError(f"the model's tile size {tile} is not a multiple of 32; pass --tile")
    try:
        grid = TileGrid(info.height, info.width, tile=tile, overlap=cfg.overlap)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    plan = BlockPlan.from_chunk(grid, cfg.chunk)

    outdir = (cfg.outdir or scene_path.parent).resolve()
    paths = output_paths(scene_path, outdir)
    _check_outdir(outdir)
    wanted = ["classes", "landcover", "report"] + [k for k in ("confidence", "preview") if getattr(cfg, k)]
    existing = [paths[k].name for k in wanted if paths[k].exists()]
    if existing and not cfg.overwrite:
        raise OutputExistsError(f"{', '.join(existing)} already exist(s) in {outdir}; pass --overwrite to replace")

    t0 = time.perf_counter()
    checksum = file_checksum(info.path)
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
        "format": 1,
    }
    store, resumed = WorkStore.prepare(paths["store"], plan, fingerprint, overwrite=cfg.overwrite)

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
        batch=cfg.batch,
        threads=threads,
        parallel=parallel,
        store=str(store.path),
        num_classes=spec.num_classes,
    )
    cleaning = Cleaning.resolve(cfg.min_area, cfg.simplify, info.mean_pixel_m)
    stage_seconds: Counter[str] = Counter()
    with _Runner(cfg) as runner:
        parts = _vector_stage(runner, job, store, cleaning, progress, stage_seconds, timings)
    timings["segment_and_vectorize"] = timings.pop("vector_stage")
    counts = np.zeros(spec.num_classes, dtype=np.int64)
    for p in parts.values():
        np.add.at(counts, p.classes.astype(np.intp), p.pixels)
    valid_pixels = int(counts.sum())
    if valid_pixels == 0:
        store.remove()
        raise SceneError(f"{scene_path.name} has no valid pixels (all nodata or masked); nothing to map")

    t0 = time.perf_counter()
    polys, geoms, area, perimeter, method = _finish_polygons(parts, cleaning, info)
    timings["merge_and_measure"] = time.perf_counter() - t0
    if progress:
        progress("vectorize", len(plan), len(plan))

    t0 = time.perf_counter()
    run_row = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "geoseg_version": __version__,
        "scene": info.path,
        "scene_checksum": checksum,
        "model": spec.name,
        "model_sha256": mhash,
        "parameters": cfg.model_dump(mode="json"),
    }
    written = _export(
        cfg,
        info,
        plan,
        store,
        paths,
        spec.classes,
        polys,
        geoms,
        area,
        perimeter,
        run_row,
        cleaned=cleaning.min_pixels > 0,
    )
    timings["export"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    cpu = {k: round(v, 3) for k, v in stage_seconds.items() if k != "tiles"}

    class_pixels = {c.name: int(counts[c.id]) for c in spec.classes}
    class_areas = {c.name: float(area[polys.classes == c.id].sum()) for c in spec.classes}
    report = {
        "geoseg_version": __version__,
        "created": run_row["created"],
        "scene": {
            "path": info.path,
            "checksum": checksum,
            "width": info.width,
            "height": info.height,
            "bands_used": list(bands),
            "dtype": info.dtype,
            "crs": info.crs_name,
            "transform": list(info.transform)[:6],
            "pixel_size_m": list(info.pixel_size_m),
            "mask": info.mask_kind,
        },
        "model": {
            "path": str(Path(cfg.model).resolve()),
            "sha256": mhash,
            "name": spec.name,
            "arch": spec.arch,
            "encoder": spec.encoder,
            "bands": list(spec.bands),
        },
        "parameters": cfg.model_dump(mode="json"),
        "grid": {
            "tile": tile,
            "overlap": cfg.overlap,
            "stride": grid.stride,
            "tiles": list(grid.shape),
            "tiles_run": int(stage_seconds.get("tiles", 0)),
            "block": plan.block_size,
            "blocks": list(plan.shape),
            "resumed_blocks": resumed,
        },
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "task_seconds": cpu,
        "throughput_mpx_s": round(info.width * info.height / 1e6 / timings["total"], 4),
        "area_method": method,
        "cleaning": {
            "min_area_m2": cleaning.min_area_m2,
            "min_pixels": cleaning.min_pixels,
            "simplify_m": cleaning.simplify_m,
        },
        "polygons": len(polys),
        "valid_pixels": valid_pixels,
        "classes": [
            {
                "id": c.id,
                "name": c.name,
                "color": c.hex,
                "pixels": class_pixels[c.name],
                "area_m2": round(class_areas[c.name], 3),
            }
            for c in spec.classes
        ],
        "outputs": {k: str(v) for k, v in written.items()},
        "versions": _versions(),
    }
    from .export import write_json

    write_json(report, paths["report"])
    written["report"] = paths["report"]
    if not cfg.keep_intermediate:
        store.remove()
    else:
        written["store"] = store.path
    if progress:
        progress("export", 1, 1)
    return RunResult(
        written, class_areas, class_pixels, len(polys), timings, info.width * info.height, valid_pixels, resumed, report
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


def _vector_stage(
    runner: _Runner,
    job: Job,
    store: WorkStore,
    cleaning: Cleaning,
    progress: ProgressCallback | None,
    stage_seconds: Counter[str],
    timings: dict[str, float],
) -> dict[tuple[int, int], BlockPolygons]:
    """Segment the blocks still missing from the store, then polygonise every block (sieving first if asked)."""

    def collect(results: list[Timed]) -> dict[tuple[int, int], BlockPolygons]:
        found = {}
        for r in results:
            stage_seconds.update(r.seconds)
            if isinstance(r.value, BlockPolygons):
                found[r.value.index] = r.value
        return found

    import dask

    t0 = time.perf_counter()
    min_pixels = cleaning.min_pixels
    outputs, totals = _graph(job, store, regions_only=min_pixels > 0)
    parts = collect(runner.compute(outputs, totals, progress))
    timings["vector_stage"] = time.perf_counter() - t0
    if min_pixels > 0:
        t0 = time.perf_counter()
        luts = sieve(parts, min_pixels)
        store.ensure("cleaned")
        cleaned = [
            dask.delayed(vectorize_block, pure=False)(job, *idx, lut=lut, dask_key_name=f"vectorize-{idx[0]}-{idx[1]}")
            for idx, lut in sorted(luts.items())
        ]
        parts = collect(runner.compute(cleaned, {"vectorize": len(cleaned)}, progress))
        timings["sieve_and_vectorize"] = time.perf_counter() - t0
    return parts


def _finish_polygons(
    parts: dict[tuple[int, int], BlockPolygons], cleaning: Cleaning, info: SceneInfo
) -> tuple[Polygons, np.ndarray, np.ndarray, np.ndarray, str]:
    """Merge across block edges, simplify, enforce the mapping unit again, move to the CRS and measure."""
    polys = merge_blocks(parts)
    if cleaning.simplify_pixels > 0:
        polys = simplify(polys, cleaning.simplify_pixels)
        if cleaning.min_pixels > 0:
            # simplification can shave a region just above the mapping unit below it
            polys = absorb_small(polys, cleaning.min_pixels)
    geoms = to_crs(polys.geoms, info.transform)
    area, perimeter, method = measure(geoms, info.crs)
    return polys, geoms, area, perimeter, method


def _graph(job: Job, store: WorkStore, *, regions_only: bool = False) -> tuple[list[Any], dict[str, int]]:
    """Delayed tasks for the blocks not yet in the store, plus vectorisation of all blocks.

    With ``regions_only`` the last stage gathers region statistics for the
    sieve instead of polygons.
    """
    import dask

    plan = job.plan
    done = store.done_blocks()
    todo = [b.index for b in plan.blocks() if b.index not in done]
    need_predict = set(todo)
    for idx in todo:
        need_predict.update(plan.neighbours(*idx))
    predicted = {
        idx: dask.delayed(predict_block, pure=False)(job, *idx, dask_key_name=f"predict-{idx[0]}-{idx[1]}")
        for idx in sorted(need_predict)
    }
    stitched = {
        idx: dask.delayed(stitch_block, pure=False)(
            job,
            *idx,
            predicted[idx],
            [predicted[n] for n in plan.neighbours(*idx)],
            dask_key_name=f"stitch-{idx[0]}-{idx[1]}",
        )
        for idx in todo
    }
    last = "regions" if regions_only else "vectorize"
    vectorized = [
        dask.delayed(vectorize_block, pure=False)(
            job, *b.index, stitched.get(b.index), regions_only=regions_only, dask_key_name=f"{last}-{b.by}-{b.bx}"
        )
        for b in plan.blocks()
    ]
    totals = {"segment": len(plan), "clean": len(plan), "vectorize": len(plan)}
    return [*stitched.values(), *vectorized], totals


def _export(
    cfg: RunConfig,
    info: SceneInfo,
    plan: BlockPlan,
    store: WorkStore,
    paths: dict[str, Path],
    classes: ClassTable,
    polys: Polygons,
    geoms: np.ndarray,
    area: np.ndarray,
    perimeter: np.ndarray,
    run_row: dict[str, Any],
    *,
    cleaned: bool,
) -> dict[str, Path]:
    from .export import class_frame, write_class_cog, write_geopackage

    written: dict[str, Path] = {}
    frame = class_frame(
        geoms,
        polys.classes,
        classes,
        info.crs_wkt,
        area_m2=area,
        perimeter_m=perimeter,
        mean_confidence=np.round(polys.mean_confidence, 4),
    )
    written["landcover"] = write_geopackage(frame, paths["landcover"], classes=classes, runs=run_row)
    source = "cleaned" if cleaned else "classes"
    written["classes"] = write_class_cog(store, plan, info, paths["classes"], classes, array=source)
    if cfg.confidence:
        written["confidence"] = write_class_cog(store, plan, info, paths["confidence"], classes, array="confidence")
    if cfg.preview:
        from .export import write_preview

        written["preview"] = write_preview(info, written["classes"], paths["preview"], classes)
    return written


@dataclass
class VectorizeResult:
    """What :func:`vectorize_raster` wrote and measured."""

    path: Path
    n_polygons: int
    class_areas: dict[str, float]
    timings: dict[str, float]
    cleaning: Cleaning


def vectorize_raster(
    classes_path: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    min_area: float | None = None,
    simplify: float | None = None,
    chunk: int = 2048,
    workers: int | None = None,
    overwrite: bool = False,
    classes: ClassTable = ISPRS,
    progress: ProgressCallback | None = None,
) -> VectorizeResult:
    """Polygonise an existing class raster (uint8 class ids, 255 = nodata) into a styled GeoPackage.

    The same block polygonisation, exact seam merge and cleaning as :func:`run`,
    for re-cleaning a map or vectorising one made elsewhere. Blocks are read
    straight from the raster and polygonised in `workers` processes (default:
    one per core), this one included. `out` defaults to
    ``<stem>.landcover.gpkg`` beside the raster (a ``.classes`` suffix of the
    stem is dropped).

    Raises
    ------
    SceneError
        The raster is not a single-band uint8 class raster of `classes`.
    OutputExistsError
        `out` exists and `overwrite` is False.
    """
    from .export import class_frame, write_geopackage

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
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
    if chunk < 32:
        raise ConfigError(f"chunk must be at least 32 pixels, got {chunk}")
    plan = BlockPlan(TileGrid(info.height, info.width, tile=chunk, overlap=0), 1)
    indices = [b.index for b in plan.blocks()]
    cleaning = Cleaning.resolve(min_area, simplify, info.mean_pixel_m)
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(indices)))

    def reporter(stage: str) -> Callable[[int], None] | None:
        return (lambda done: progress(stage, done, len(indices))) if progress else None

    pool = BlockPool(n_workers)
    try:
        t0 = time.perf_counter()
        luts = None
        if cleaning.min_pixels > 0:
            regions = pool.map(
                functools.partial(raster_block_polygons, info.path, plan, len(classes), True, None),
                indices,
                reporter("clean"),
            )
            luts = sieve(dict(zip(indices, regions, strict=True)), cleaning.min_pixels)
        parts = pool.map(
            functools.partial(raster_block_polygons, info.path, plan, len(classes), False, luts),
            indices,
            reporter("vectorize"),
        )
        timings["vectorize"] = time.perf_counter() - t0
    finally:
        pool.close()
    t0 = time.perf_counter()
    polys, geoms, area, perimeter, _ = _finish_polygons(dict(zip(indices, parts, strict=True)), cleaning, info)
    timings["merge_and_measure"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    frame = class_frame(geoms, polys.classes, classes, info.crs_wkt, area_m2=area, perimeter_m=perimeter)
    row = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "geoseg_version": __version__,
        "scene": info.path,
        "parameters": {"min_area_m2": cleaning.min_area_m2, "simplify_m": cleaning.simplify_m, "chunk": chunk},
    }
    write_geopackage(frame, out_path, classes=classes, runs=row)
    timings["export"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    areas = {c.name: float(area[polys.classes == c.id].sum()) for c in classes}
    return VectorizeResult(out_path, len(polys), areas, timings, cleaning)
