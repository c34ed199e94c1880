"""Segmentation as one Dask graph over the scene's blocks (see :mod:`geoseg.tiling`).

For every block of the plan::

    predict-Y-X    read the block's extent by path, run its tiles, blend  -> BlockPartial
    own-Y-X        the partial without the parts of its edge pieces outside its core
    edges-Y-X-V-U  the pieces of block (Y, X)'s partial that block (V, U) needs
    stitch-Y-X     add the neighbours' edge contributions, write zarr    <- own, 8 edges

Each intermediate result has one consumer: Dask frees a block's whole
partial as soon as its own and edge parts are cut out of it (right after the
prediction), the own part once the block is stitched and each edge part once
the neighbour it is for is: what waits for the next row of blocks is a
block's core classes and the thin bands along its edges. Workers receive
paths and small settings objects (:class:`Job`), never open datasets or
models; each worker process loads the model once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._failpoints import failpoint
from .._parallel import Timed
from ..errors import SceneError
from ..raster import read_window
from ..stitch import BlockPartial, accumulate, finish_block, make_partial, tile_weights
from ..store import WorkStore
from ..tiling import BlockPlan, Rect

__all__ = ["Job", "build_graph", "edges_toward", "own_part", "predict_block", "stitch_block"]


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
    from ..predict.runtime import get_predictor, worker_device  # torch or onnxruntime, in the worker only

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


def build_graph(job: Job, store: WorkStore) -> tuple[dict[str, Any], list[str]]:
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
