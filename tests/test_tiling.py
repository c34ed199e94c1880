import numpy as np
import pytest

from geoseg.tiling import BlockPlan, Rect, TileGrid


@pytest.mark.parametrize(
    ("h", "w", "tile", "overlap"), [(3000, 2500, 512, 64), (232, 383, 512, 64), (1, 1, 64, 16), (1000, 999, 256, 0)]
)
def test_tile_cores_partition_the_scene_and_extents_overlap_by_overlap(h, w, tile, overlap):
    g = TileGrid(h, w, tile=tile, overlap=overlap)
    cover = np.zeros((h, w), dtype=np.int32)
    ny, nx = g.shape
    for ty in range(ny):
        for tx in range(nx):
            core, ext = g.tile_core(ty, tx), g.tile_extent(ty, tx)
            assert ext.height == ext.width == tile
            assert ext.row0 == core.row0 - g.margin and ext.col0 == core.col0 - g.margin
            cover[core.slices()] += 1
            if tx + 1 < nx:
                nxt = g.tile_extent(ty, tx + 1)
                assert ext.col1 - nxt.col0 == overlap
    assert (cover == 1).all()


def test_grid_is_anchored_at_the_origin_and_independent_of_blocks():
    g = TileGrid(3000, 2500, 512, 64)
    a, b = BlockPlan.from_chunk(g, 1024), BlockPlan.from_chunk(g, 4096)
    assert (a.tiles_per_block, b.tiles_per_block) == (2, 9)
    tiles_a = sorted(t for blk in a.blocks() for t in blk.tiles())
    tiles_b = sorted(t for blk in b.blocks() for t in blk.tiles())
    assert tiles_a == tiles_b == [(y, x) for y in range(g.shape[0]) for x in range(g.shape[1])]


@pytest.mark.parametrize("chunk", [100, 896, 1024, 5000])
def test_block_cores_partition_the_scene_and_extent_is_union_of_tile_extents(chunk):
    g = TileGrid(1234, 987, 256, 32)
    plan = BlockPlan.from_chunk(g, chunk)
    cover = np.zeros((g.height, g.width), dtype=np.int32)
    for blk in plan.blocks():
        cover[blk.core.slices()] += 1
        exts = [g.tile_extent(*t) for t in blk.tiles()]
        assert blk.extent == Rect(
            min(e.row0 for e in exts), min(e.col0 for e in exts), max(e.row1 for e in exts), max(e.col1 for e in exts)
        )
    assert (cover == 1).all()
    assert plan.block_size % g.stride == 0


def test_neighbours():
    plan = BlockPlan(TileGrid(2000, 2000, 256, 32), 2)
    assert plan.shape == (5, 5)
    assert len(plan.neighbours(0, 0)) == 3
    assert len(plan.neighbours(2, 2)) == 8
    assert (1, 1) in plan.neighbours(2, 2)


@pytest.mark.parametrize(("tile", "overlap", "match"), [(512, 63, "even"), (512, 300, "half"), (8, 0, "at least")])
def test_invalid_grids_say_how_to_fix(tile, overlap, match):
    with pytest.raises(ValueError, match=match):
        TileGrid(100, 100, tile=tile, overlap=overlap)
