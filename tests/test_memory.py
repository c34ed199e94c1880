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
import rasterio
from rasterio.windows import Window

from geoseg import pipeline
from geoseg.config import RunConfig
from geoseg.synthetic import SceneSpec, write_scene

SIZE = 1024


def tile_copies(src: Path, dst: Path, rows: int, cols: int) -> Path:
    """`rows` x `cols` copies of `src`, written window by window."""
    with rasterio.open(src) as ds:
        data = ds.read()
        profile = ds.profile | {"width": cols * SIZE, "height": rows * SIZE, "tiled": True, "compress": "deflate"}
    with rasterio.open(dst, "w", **profile) as out:
        for i in range(rows):
            for j in range(cols):
                out.write(data, window=Window(j * SIZE, i * SIZE, SIZE, SIZE))
    return dst


def traced_peak(scene: Path, model: Path, outdir: Path, **kw) -> tuple[int, dict]:
    tracemalloc.start()
    try:
        result = pipeline.run(
            RunConfig(scene=scene, model=model, outdir=outdir, tile=256, overlap=32, chunk=512, workers=1, **kw)
        )
        return tracemalloc.get_traced_memory()[1], result.report
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("cleaning", [{"min_area": 0, "simplify": 0}, {}], ids=["exact", "default-cleaning"])
def test_peak_memory_does_not_grow_with_the_scene(tmp_path, fcn_model, monkeypatch, cleaning):
    monkeypatch.setattr(pipeline, "VECTOR_CELL", 512)
    small = tmp_path / "small.tif"
    write_scene(SceneSpec(width=SIZE, height=SIZE, pixel_size=0.1, seed=5), small)
    big = tile_copies(small, tmp_path / "big.tif", 4, 1)
    # once untraced first: lazy imports and one-time caches are not what is measured
    pipeline.run(RunConfig(scene=small, model=fcn_model, outdir=tmp_path / "warm-up", tile=256, workers=1))

    peak_small, rep_small = traced_peak(small, fcn_model, tmp_path / "out-small", **cleaning)
    peak_big, rep_big = traced_peak(big, fcn_model, tmp_path / "out-big", **cleaning)

    assert rep_big["grid"]["blocks"] == [10, 3] and rep_small["grid"]["blocks"] == [3, 3]
    assert rep_big["polygons"] > 3 * rep_small["polygons"]  # 4x the work, not a near-empty map
    # the trace sees the run's arrays: at least one block accumulator (int32 per class and pixel)
    ext = 2 * 224 + 32
    assert peak_small > 6 * ext * ext * 4
    assert peak_big <= 1.2 * peak_small, f"{peak_big / 2**20:.1f} MiB vs {peak_small / 2**20:.1f} MiB"
