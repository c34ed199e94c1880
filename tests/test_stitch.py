"""Blending without a model: tile 'predictions' are seeded noise keyed by the tile's global index."""

import numpy as np
import pytest

from geoseg.classes import NODATA
from geoseg.stitch import accumulate, finalize, finish_block, make_partial, ramp, tile_weights
from geoseg.tiling import BlockPlan, Rect, TileGrid

K = 6


def fake_probs(ty: int, tx: int, tile: int) -> np.ndarray:
    rng = np.random.default_rng(ty * 1000 + tx)
    logits = rng.normal(size=(K, tile // 8, tile // 8)).repeat(8, 1).repeat(8, 2).astype(np.float32)
    e = np.exp(logits)
    return (e / e.sum(0)).astype(np.float32)


def run_blocks(grid: TileGrid, chunk: int, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    plan = BlockPlan.from_chunk(grid, chunk)
    w = tile_weights(grid.tile, grid.overlap)
    partials = {}
    for blk in plan.blocks():
        acc = np.zeros((K, blk.extent.height, blk.extent.width), np.int32)
        for t in blk.tiles():
            accumulate(acc, blk.extent, fake_probs(*t, grid.tile), w, grid.tile_extent(*t))
        partials[blk.index] = make_partial(plan, blk, acc, valid[blk.core.slices()])
    cls = np.full((grid.height, grid.width), 77, np.uint8)
    conf = np.zeros_like(cls)
    for blk in plan.blocks():
        nbrs = [partials[n].toward(blk.core) for n in plan.neighbours(*blk.index)]
        c, f = finish_block(plan, partials[blk.index], nbrs)
        cls[blk.core.slices()], conf[blk.core.slices()] = c, f
    return cls, conf


def test_ramp_is_a_partition_of_unity_over_the_overlap():
    for tile, overlap in [(512, 64), (256, 128), (64, 2)]:
        w = ramp(tile, overlap).astype(np.float64)
        assert np.allclose(w[-overlap:] + w[:overlap], 1.0, atol=1e-6)
        assert (w > 0).all()
        assert w.max() == 1.0 or 2 * overlap == tile  # ramps meet in the middle when overlap = tile / 2
    assert (ramp(32, 0) == 1).all()


def test_blend_equals_global_float_reference():
    grid = TileGrid(300, 260, tile=64, overlap=16)
    valid = np.ones((300, 260), bool)
    cls, conf = run_blocks(grid, 10_000, valid)
    ref = np.zeros((K, 300, 260))
    wsum = np.zeros((300, 260))
    w = tile_weights(64, 16).astype(np.float64)
    for ty in range(grid.shape[0]):
        for tx in range(grid.shape[1]):
            e = grid.tile_extent(ty, tx)
            inter = e.intersect(Rect(0, 0, 300, 260))
            s = inter.slices(e)
            ref[(slice(None), *inter.slices())] += fake_probs(ty, tx, 64)[:, s[0], s[1]] * w[s]
            wsum[inter.slices()] += w[s]
    ref /= wsum
    assert (cls == ref.argmax(0)).mean() > 0.9999
    assert np.abs(conf.astype(float) - 255 * ref.max(0)).max() <= 1.0


@pytest.mark.parametrize("chunk", [48, 96, 150, 1000])
def test_blocks_of_any_size_give_identical_bytes(chunk):
    grid = TileGrid(301, 263, tile=64, overlap=16)
    valid = np.ones((301, 263), bool)
    valid[:40, :30] = False
    whole = run_blocks(grid, 100_000, valid)
    parts = run_blocks(grid, chunk, valid)
    assert BlockPlan.from_chunk(grid, chunk).shape != (1, 1) or chunk == 1000
    np.testing.assert_array_equal(parts[0], whole[0])
    np.testing.assert_array_equal(parts[1], whole[1])
    assert (whole[0][:40, :30] == NODATA).all() and (whole[0][40:] != NODATA).all()


def test_finalize_ties_and_uncovered_pixels():
    acc = np.zeros((3, 1, 3), np.int32)
    acc[:, 0, 0] = [5, 5, 0]  # tie -> lowest id
    acc[:, 0, 1] = [0, 1, 3]
    cls, conf = finalize(acc)
    assert cls.tolist() == [[0, 2, NODATA]]
    assert conf.tolist() == [[128, 191, 0]]
