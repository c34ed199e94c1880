"""Memory does not grow with the scene: a 4x longer scene needs no more than ~1.2x the memory.

Python's tracemalloc sees every NumPy array (reads, accumulators, partials,
cells, polygons, write buffers) allocated by the run in this process, on every
thread; workers=1 keeps vectorisation in this process too. The model's own
memory (torch tensors) is the same for any scene and is not traced. The vector
cell is shrunk to 512 px so that both scenes span several cells, as a large
scene does with the real 2048 px cell.

What a run holds besides fixed-size buffers is the front of blocks that wait
for their neighbours' predictions (about two rows of blocks' partials and edge
pieces) and the sieve's few numbers per region: the former grows with the
scene's width, not its length, so the scenes here differ in length.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from geoseg import pipeline
from geoseg.config import RunConfig
from geoseg.pipeline import blocks
from geoseg.synthetic import SceneSpec, write_copies, write_scene

SIZE = 1024


def traced_peak(scene: Path, model: Path, outdir: Path, **kw) -> tuple[int, dict]:
    tracemalloc.start()
    try:
        result = pipeline.run(
            RunConfig(scene=scene, model=model, outdir=outdir, tile=256, overlap=32, chunk=512, workers=1, **kw)
        )
        return tracemalloc.get_traced_memory()[1], result.report.model_dump()
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("cleaning", [{"min_area": 0, "simplify": 0}, {}], ids=["exact", "default-cleaning"])
def test_peak_memory_does_not_grow_with_the_scene(tmp_path, fcn_model, monkeypatch, cleaning):
    monkeypatch.setattr("geoseg.vectorize.cells.VECTOR_CELL", 512)
    one = tmp_path / "one.tif"
    write_scene(SceneSpec(width=SIZE, height=SIZE, pixel_size=0.1, seed=5), one)
    # both scenes are longer than the front of blocks waiting for their neighbours (~3 rows)
    small = write_copies(one, tmp_path / "small.tif", 2, 1)
    big = write_copies(one, tmp_path / "big.tif", 8, 1)
    # once untraced first: lazy imports and one-time caches are not what is measured
    pipeline.run(RunConfig(scene=one, model=fcn_model, outdir=tmp_path / "warm-up", tile=256, workers=1))

    peak_small, rep_small = traced_peak(small, fcn_model, tmp_path / "out-small", **cleaning)
    peak_big, rep_big = traced_peak(big, fcn_model, tmp_path / "out-big", **cleaning)

    assert rep_big["grid"]["blocks"] == [19, 3] and rep_small["grid"]["blocks"] == [5, 3]
    assert rep_big["polygons"] > 3 * rep_small["polygons"]  # 4x the work, not a near-empty map
    # the trace sees the run's arrays: at least one block accumulator (int32 per class and pixel)
    ext = 2 * 224 + 32
    assert peak_small > 6 * ext * ext * 4
    assert peak_big <= 1.2 * peak_small, f"{peak_big / 2**20:.1f} MiB vs {peak_small / 2**20:.1f} MiB"


def test_blocks_advance_row_by_row_so_at_most_two_rows_wait_for_neighbours():
    """In Dask's execution order, the blocks predicted but not yet stitched never exceed two rows.

    The same graph built from nested ``dask.delayed`` objects was ordered
    interior first, leaving the scene's outer ring of blocks to the end (63
    waiting blocks on this 19 x 19 plan).
    """
    from dask.order import order

    from geoseg.tiling import BlockPlan, TileGrid

    class EmptyStore:
        def done_blocks(self) -> set:
            return set()

    plan = BlockPlan.from_chunk(TileGrid(16384, 16384, tile=512, overlap=64), 1024)
    job = blocks.Job("s.tif", (1, 2, 3), (0.0,) * 3, plan, "m.pt", "cpu", "fp32", None, 1, 1, "s.zarr", 6)
    dsk, keys = blocks.build_graph(job, EmptyStore())
    assert len(keys) == len(plan) == 19 * 19
    priority = order(dsk)
    waiting: set[str] = set()
    most = 0
    for key in sorted(dsk, key=lambda k: getattr(priority[k], "priority", priority[k])):
        kind, block = key.split("-", 1)
        if kind == "predict":
            waiting.add(block)
        elif kind == "stitch":
            waiting.discard(block)
        most = max(most, len(waiting))
    assert most <= 2 * plan.shape[1]
