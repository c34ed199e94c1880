"""The zarr working store: blocks written and marked, resume by fingerprint, refusal of foreign folders."""

from __future__ import annotations

import numpy as np
import pytest

from geoseg.classes import NODATA
from geoseg.errors import GeosegIOError
from geoseg.store import WorkStore
from geoseg.tiling import BlockPlan, Rect, TileGrid

PLAN = BlockPlan.from_chunk(TileGrid(300, 200, tile=64, overlap=16), 128)
PRINT = {"scene": "sha256:ab", "model": "cd", "tile": 64, "format": 1}


def fill(store: WorkStore, n: int) -> list[tuple[int, int]]:
    """Write the first `n` blocks with their own class id (its block number) and return their indices."""
    written = []
    for k, block in enumerate(list(PLAN.blocks())[:n]):
        shape = (block.core.height, block.core.width)
        store.write_block(block, np.full(shape, k % 6, np.uint8), np.full(shape, 200, np.uint8))
        written.append(block.index)
    return written


def test_blocks_are_written_where_they_belong_and_marked_done(tmp_path):
    store, resumed = WorkStore.prepare(tmp_path / "s.zarr", PLAN, PRINT)
    assert resumed == 0 and store.shape == (300, 200) and store.done_blocks() == set()
    assert (store.read(Rect(0, 0, 300, 200)) == NODATA).all()  # unwritten pixels read as nodata
    written = fill(store, 3)
    assert store.done_blocks() == set(written)
    for k, block in enumerate(list(PLAN.blocks())[:3]):
        assert (store.read(block.core) == k).all()
        assert (store.read(block.core, "confidence") == 200).all()


def test_a_matching_fingerprint_resumes_and_any_other_starts_afresh(tmp_path):
    store, _ = WorkStore.prepare(tmp_path / "s.zarr", PLAN, PRINT)
    fill(store, 4)
    again, resumed = WorkStore.prepare(tmp_path / "s.zarr", PLAN, dict(PRINT))
    assert resumed == 4 and again.done_blocks() == store.done_blocks()
    other, resumed = WorkStore.prepare(tmp_path / "s.zarr", PLAN, PRINT | {"model": "ef"})
    assert resumed == 0 and other.done_blocks() == set()
    assert (other.read(Rect(0, 0, 300, 200)) == NODATA).all()


def test_check_complete_refuses_a_store_with_missing_blocks(tmp_path):
    store, _ = WorkStore.prepare(tmp_path / "s.zarr", PLAN, PRINT)
    fill(store, len(PLAN) - 1)
    with pytest.raises(GeosegIOError, match=rf"holds {len(PLAN) - 1} of {len(PLAN)} finished blocks"):
        store.check_complete(PLAN)
    fill(store, len(PLAN))
    store.check_complete(PLAN)
    store.remove()
    with pytest.raises(GeosegIOError, match="gone or damaged"):
        store.check_complete(PLAN)


def test_a_folder_that_is_not_a_store_is_not_replaced_without_overwrite(tmp_path):
    folder = tmp_path / "s.zarr"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep")
    with pytest.raises(GeosegIOError, match="not a geoseg working store"):
        WorkStore.prepare(folder, PLAN, PRINT)
    assert (folder / "mine.txt").read_text() == "keep"
    _, resumed = WorkStore.prepare(folder, PLAN, PRINT, overwrite=True)
    assert resumed == 0 and not (folder / "mine.txt").exists()


def test_ensure_makes_an_empty_array_in_other_chunks(tmp_path):
    store, _ = WorkStore.prepare(tmp_path / "s.zarr", PLAN, PRINT)
    fill(store, len(PLAN))
    store.ensure("cleaned", chunks=96)
    assert (store.read(Rect(0, 0, 300, 200), "cleaned") == NODATA).all()
    store.write(Rect(0, 0, 96, 96), np.full((96, 96), 3, np.uint8), "cleaned")
    store.ensure("cleaned", chunks=96)  # emptied again
    assert (store.read(Rect(0, 0, 96, 96), "cleaned") == NODATA).all()
